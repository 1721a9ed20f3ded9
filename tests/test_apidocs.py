"""
C{scripts/apidocs.py}, the API reference build that C{scripts/check} runs:
public names are documented where users import them from, and a docstring
that pydoctor warns about fails the build.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def apidocs() -> Iterator[ModuleType]:
    # The build names its pydoctor system by module name, so the module must
    # be importable under the name it is loaded as.
    spec = importlib.util.spec_from_file_location(
        "apidocs", ROOT / "scripts" / "apidocs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["apidocs"] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules["apidocs"]


def package(root: Path, docstring: str, exported: str = "Thing") -> Path:
    """
    Write package C{pkg} under C{root}: class C{Thing} with C{docstring},
    defined in the private module C{pkg._impl}, listed in that module's
    C{__all__} and re-exported by the package as C{exported}.
    """
    pkg = root / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        f'"""A package."""\nfrom ._impl import Thing\n__all__ = ["{exported}"]\n'
    )
    (pkg / "_impl.py").write_text(
        '"""The implementation."""\n__all__ = ["Thing"]\n\n\n'
        f'class Thing:\n    """{docstring}"""\n\n'
        '    def go(self) -> None:\n        """Go."""\n'
    )
    return pkg


def test_exported_names_are_documented_on_the_package(
    apidocs: ModuleType, tmp_path: Path
) -> None:
    source = package(tmp_path, "A thing: call L{go}.")
    output = tmp_path / "apidocs"
    (output / "stale").mkdir(parents=True)

    assert apidocs.build(source, output) == 0

    assert (output / "pkg.Thing.html").exists()
    assert not (output / "pkg._impl.Thing.html").exists()
    assert 'href="#go"' in (output / "pkg.Thing.html").read_text()
    # The output is replaced, not added to.
    assert not (output / "stale").exists()


@pytest.mark.parametrize(
    ("docstring", "warning"),
    [
        ("A thing: see L{Deferred}.", 'Cannot find link target for "Deferred"'),
        (
            "A thing.\n\n    @param nope: no such thing.",
            'parameter "nope" does not exist',
        ),
    ],
)
def test_a_docstring_that_pydoctor_warns_about_fails_the_build(
    apidocs: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    docstring: str,
    warning: str,
) -> None:
    source = package(tmp_path, docstring)

    assert apidocs.build(source, tmp_path / "apidocs") == 3

    assert warning in capsys.readouterr().out


def test_an_export_that_does_not_exist_fails_the_build(
    apidocs: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = package(tmp_path, "A thing.", exported="Nothing")

    assert apidocs.build(source, tmp_path / "apidocs") == 3

    assert "cannot document 'Nothing' of __all__ here" in capsys.readouterr().out


def test_the_reference_is_ignored_by_git() -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    # check-ignore exits 0 when the path is ignored.
    ignored = subprocess.run(
        ["git", "check-ignore", "--quiet", "build/apidocs/index.html"], cwd=ROOT
    )
    assert ignored.returncode == 0
