"""
C{python -m twisted_close}: the demo in the foreground, as C{twistd -n
closedemo} with the same options, leaving no pid file behind.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from .program import Program
from .twistd_process import LISTEN, http_get, run_to_end


def run(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return run_to_end([sys.executable, "-m", "twisted_close", *argv], tmp_path)


def test_help_lists_closedemos_options(tmp_path: Path) -> None:
    result = run(tmp_path, "--help")
    assert result.returncode == 0, result.stderr
    assert "--max-pending=" in result.stdout
    assert "10,000,000" in result.stdout


def test_version(tmp_path: Path) -> None:
    from twisted_close import __version__

    result = run(tmp_path, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"closedemo (twisted-close) {__version__}\n"


def test_a_bad_option_is_a_usage_error(tmp_path: Path) -> None:
    result = run(tmp_path, "--tick", "abc")
    assert result.returncode != 0
    assert "--tick: tick 'abc' is not a number" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_serves_the_demo_in_the_foreground(tmp_path: Path) -> None:
    program = Program([sys.executable, "-m", "twisted_close", *LISTEN], tmp_path)
    try:
        port = program.port()
        assert http_get(port, "/?delay=0") == (200, b"hello")
        program.process.send_signal(signal.SIGTERM)
        program.finish()
        assert "Shutdown drain" in program.output
    finally:
        program.kill()
    assert list(tmp_path.iterdir()) == []  # no twistd.pid, no log file


def test_a_bad_port_is_named_in_our_words(tmp_path: Path) -> None:
    result = run(tmp_path, "--listen", "tcp:abc")
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "--listen 'tcp:abc': 'abc' is not a whole number" in out
    assert "int()" not in out
    assert " -n" not in out  # an option the user never typed
    assert "Traceback" not in out
