"""
The distribution ships the twistd plugin (daphne lost its plugin from two
releases by leaving it out of the package list).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


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
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from twisted.scripts.twistd import run; run()",
            "--help",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "closedemo" in result.stdout
    origin = subprocess.run(
        [sys.executable, "-c", "import twisted_close; print(twisted_close.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert origin.startswith(str(target))
