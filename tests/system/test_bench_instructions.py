"""
C{python -m bench.instructions} counts a peer's instructions per request
and per interruption under callgrind.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from bench.instructions import _total

from ..helpers import temporary_directory

ROOT = Path(__file__).resolve().parents[2]


class TotalTests(SynchronousTestCase):
    def test_the_newest_dump_of_the_process_is_read(self) -> None:
        dumps = Path(temporary_directory(self))
        (dumps / "cg.7.2").write_text("events: Ir\nsummary: 100\n")
        (dumps / "cg.7.10").write_text("events: Ir\ntotals: 2500\n")
        (dumps / "cg.8.11").write_text("summary: 999999\n")
        self.assertEqual(_total(dumps, 7), 2500)


def test_bare_twisted_is_counted_per_request_and_per_interruption(
    tmp_path: Path,
) -> None:
    # A pytest function, run once: under callgrind a peer is some 50 times
    # slower, and neither trial nor the reactor changes what this checks.
    assert shutil.which("valgrind"), "valgrind is not installed: scripts/test does"
    out = tmp_path / "r.json"
    subprocess.run(
        [sys.executable, "-m", "bench.instructions", "--peers", "bare_twisted",
         "--requests", "200", "--storm", "100", "--json", str(out)],
        cwd=ROOT, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    counted = json.loads(out.read_text())["bare_twisted"]
    # A twisted.web request costs a few hundred thousand instructions; a
    # count of the whole process (imports, start) would be far more.
    assert 100_000 < counted["per_request"] < 2_000_000
    assert 20_000 < counted["per_interruption"] < 2_000_000
