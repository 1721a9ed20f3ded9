"""
The benchmark harness writes into an ignored directory unless told to
refresh the tracked run the READMEs cite.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from bench.__main__ import OUTPUT, TRACKED, parse
from bench._chart import write_chart

from .helpers import temporary_directory

ROOT = Path(__file__).resolve().parent.parent


class BenchOutputTests(SynchronousTestCase):
    def test_a_run_writes_an_ignored_file_by_default(self) -> None:
        self.assertEqual(parse(["--quick"]).json, OUTPUT)
        ignored = subprocess.run(
            ["git", "check-ignore", "-q", str(OUTPUT)], cwd=ROOT, check=False
        )
        self.assertEqual(ignored.returncode, 0, f"{OUTPUT} is not ignored by git")

    def test_only_update_docs_writes_the_tracked_run(self) -> None:
        self.assertEqual(parse(["--update-docs"]).json, TRACKED)
        self.assertEqual(parse(["--json", "/tmp/r.json"]).json, Path("/tmp/r.json"))

    def test_json_and_update_docs_together_are_an_error(self) -> None:
        with contextlib.redirect_stderr(io.StringIO()) as err:
            with self.assertRaises(SystemExit):
                parse(["--update-docs", "--json", "/tmp/r.json"])
        self.assertIn("--update-docs", err.getvalue())


class ChartTests(SynchronousTestCase):
    def test_the_chart_shows_each_peers_ratios_beside_the_json(self) -> None:
        data = {
            "machine": {"closedemo_commit": "abc1234"},
            "ratios": {
                "bare_twisted": {"requests_per_s": 1.0, "abort_ms": 1.0},
                "closedemo": {"requests_per_s": 0.98, "abort_ms": 1.02},
                "node": {"requests_per_s": 1.3, "abort_ms": 1.5},
            },
        }
        path = Path(temporary_directory(self)) / "results.png"
        written = write_chart(data, path, "bare_twisted")
        self.assertEqual(written, path)
        self.assertEqual(path.read_bytes()[:8], b"\x89PNG\r\n\x1a\n")

    def test_no_ratios_no_chart(self) -> None:
        path = Path(temporary_directory(self)) / "results.png"
        self.assertIsNone(write_chart({"ratios": {}}, path, "bare_twisted"))
        self.assertFalse(path.exists())
