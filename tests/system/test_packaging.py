"""
The distribution ships the twistd plugin (daphne lost its plugin from two
releases by leaving it out of the package list).
"""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # The wheel is built from the sdist, so both must carry everything.
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return out


def test_wheel_has_the_plugin_and_no_twisted_init(dist: Path) -> None:
    [wheel] = dist.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "twisted/plugins/closedemo.py" in names
    assert "twisted_close/closedemo/tap.py" in names
    assert "twisted_close/py.typed" in names
    # Every module, subpackages too (setup.cfg lists packages by name).
    for module in (ROOT / "twisted_close").rglob("*.py"):
        assert module.relative_to(ROOT).as_posix() in names
    # The demo page is package data, read at run time.
    assert "twisted_close/closedemo/demo.html" in names
    # An __init__.py here would shadow every other package's plugins.
    assert "twisted/__init__.py" not in names
    assert "twisted/plugins/__init__.py" not in names


def test_sdist_has_the_plugin(dist: Path) -> None:
    [sdist] = dist.glob("*.tar.gz")
    names = {n.split("/", 1)[1] for n in tarfile.open(sdist).getnames() if "/" in n}
    assert "twisted/plugins/closedemo.py" in names
    assert "README.md" in names
    assert "twisted_close/closedemo/demo.html" in names


def test_installed_wheel_is_found_by_twistd(dist: Path, tmp_path: Path) -> None:
    [wheel] = dist.glob("*.whl")
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--quiet",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    # Run away from the checkout, so that only the installed copy can answer.
    env = {**os.environ, "PYTHONPATH": str(target)}

    def installed(*argv: str) -> str:
        return subprocess.run(
            [sys.executable, *argv],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    twistd = "from twisted.scripts.twistd import run; run()"
    assert "closedemo" in installed("-c", twistd, "--help")
    origin = installed("-c", "import twisted_close; print(twisted_close.__file__)")
    assert origin.startswith(str(target))
    version = installed("-c", "import twisted_close; print(twisted_close.__version__)")
    assert version == f"{metadata()['version']}\n"


def test_wheel_and_sdist_carry_the_license(dist: Path) -> None:
    [wheel] = dist.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names
    [sdist] = dist.glob("*.tar.gz")
    assert any(n.endswith("/LICENSE") for n in tarfile.open(sdist).getnames())


def metadata() -> configparser.SectionProxy:
    config = configparser.ConfigParser(interpolation=None)
    config.read(ROOT / "setup.cfg")
    return config["metadata"]


def test_the_readme_states_the_versions_setup_cfg_requires() -> None:
    config = configparser.ConfigParser(interpolation=None)
    config.read(ROOT / "setup.cfg")
    readme = (ROOT / "README.md").read_text()
    python = config["options"]["python_requires"].removeprefix(">=")
    [twisted] = [
        r.removeprefix("twisted>=")
        for r in config["options"]["install_requires"].split()
        if r.startswith("twisted>=")
    ]
    assert f"Python {python} or later and Twisted {twisted} or later" in readme
    classifiers = config["metadata"]["classifiers"].split("\n")
    assert f"Programming Language :: Python :: {python}" in classifiers
    running = "{}.{}".format(*sys.version_info[:2])
    assert f"Programming Language :: Python :: {running}" in classifiers
    assert f"Python {running}" in readme  # the one the suite runs on
    assert "License :: OSI Approved :: MIT License" in classifiers
    assert config["metadata"]["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n")
    assert "klein" in config["options.extras_require"]


def test_the_version_without_metadata_is_unknown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib
    import importlib.metadata

    from twisted_close import _version

    def missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    try:
        assert importlib.reload(_version).__version__ == "0+unknown"
    finally:
        monkeypatch.undo()
        importlib.reload(_version)
    assert _version.__version__ == metadata()["version"]


def test_the_suite_runs_from_the_unpacked_sdist(dist: Path, tmp_path: Path) -> None:
    # A distribution builds and tests from the sdist, with no .git around it.
    [sdist] = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp_path, filter="data")
    [tree] = tmp_path.iterdir()
    assert not (tree / ".git").exists()
    # Every deterministic test (they read the tree: the README's and the
    # pages' examples, the API reference, the exports) and the bench
    # harness's own; the system tests need the kernel and services, which a
    # distribution's build does not have.
    run = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"),
            "tests",
            "--ignore=tests/system",
            "tests/system/test_bench_output.py",
        ],
        cwd=tree,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert " passed" in run.stdout
    # The unpacked copy answered, not the checkout this suite runs from.
    origin = subprocess.run(
        [sys.executable, "-c", "import twisted_close; print(twisted_close.__file__)"],
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert origin.startswith(str(tree))
