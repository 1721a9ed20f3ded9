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
