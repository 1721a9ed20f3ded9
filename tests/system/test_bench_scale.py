"""
C{python -m bench --scale} measures each peer at N held requests, N up to
what the descriptor limit allows, and says where it stopped.
"""

from __future__ import annotations

import contextlib
import io
import json
import resource
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from bench import _load, _scale
from bench.__main__ import parse

from ..helpers import temporary_directory

ROOT = Path(__file__).resolve().parents[2]


class SizesTests(SynchronousTestCase):
    def test_the_ladder_stops_at_the_limit_and_measures_the_limit(self) -> None:
        self.assertEqual(
            _scale.sizes(_scale.LADDER, 19_500),
            ([1000, 2000, 4000, 8000, 16_000, 19_500], "descriptor limit"),
        )
        self.assertEqual(
            _scale.sizes(_scale.LADDER, 16_000),
            ([1000, 2000, 4000, 8000, 16_000], "descriptor limit"),
        )

    def test_a_ladder_under_the_limit_ends_where_it_ends(self) -> None:
        self.assertEqual(
            _scale.sizes((200, 800), 19_500), ([200, 800], "end of the ladder")
        )

    def test_the_limit_leaves_each_process_its_reserve(self) -> None:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        found = _scale.descriptor_limit()
        self.assertEqual(found["nofile_hard"], hard)
        self.assertLessEqual(found["max_n"], hard - _scale.RESERVE)

    def test_scale_has_its_own_defaults(self) -> None:
        args = parse(["--scale"])
        self.assertEqual(args.peers, ["closedemo", "bare_twisted", "node"])
        self.assertEqual(args.json.name, "scale.json")
        self.assertEqual(args.storms, 5)
        self.assertEqual(parse(["--scale", "--quick"]).storms, 2)
        self.assertEqual(parse(["--scale", "--update-docs"]).json.name, "scale.json")


class SourceAddressTests(SynchronousTestCase):
    def test_each_connection_has_its_own_loopback_address(self) -> None:
        found = [_load.source_address(i) for i in range(100_000)]
        self.assertEqual(len(set(found)), len(found))
        for address in found[::997]:
            first, *rest = (int(b) for b in address.split("."))
            self.assertEqual(first, 127)
            self.assertTrue(all(1 <= b <= 250 for b in rest), address)


class MissingNodeTests(SynchronousTestCase):
    def test_node_is_skipped_and_said_so_when_missing(self) -> None:
        self.patch(shutil, "which", lambda name: None)
        args = parse(["--scale", "--quick", "--peers", "node"])
        args.server_cpus = None
        data = _scale.run(args, Path(temporary_directory(self)), lambda m: None)
        self.assertEqual(data["peers"], {})
        self.assertEqual(data["skipped"], {"node": "`node` is not on PATH"})
        data["machine"] = {}
        with contextlib.redirect_stdout(io.StringIO()) as out:
            _scale.report(data)
        self.assertIn("note: node skipped: `node` is not on PATH", out.getvalue())


class QuickScaleTests(SynchronousTestCase):
    """
    A real quick run (a subprocess) under a hard descriptor limit of 1,100:
    each side may hold 600 sockets beside its reserve of 500, so the quick
    ladder (200, 800) stops at 600.
    """

    def test_a_quick_run_stops_at_the_descriptor_limit(self) -> None:
        path = Path(temporary_directory(self)) / "scale.json"
        argv = [sys.executable, "-m", "bench", "--scale", "--quick", "--storms", "1"]
        argv += ["--peers", "bare_twisted,closedemo", "--json", str(path)]

        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (1100, 1100))

        run = subprocess.run(
            argv, cwd=ROOT, capture_output=True, text=True, timeout=120,
            preexec_fn=limit,
        )  # fmt: skip
        self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
        data = json.loads(path.read_text())
        self.assertEqual(data["sizes"], [200, 600])
        self.assertEqual(data["limit"]["max_n"], 600)
        self.assertEqual(data["limit"]["stopped_by"], "descriptor limit")
        self.assertEqual(list(data["peers"]), ["bare_twisted", "closedemo"])
        for rows in data["peers"].values():
            self.assertEqual([r["n"] for r in rows], [200, 600])
            self.assertEqual(rows[-1]["due"], 300)
            for row in rows:
                for key, _, _ in _scale.FIGURES:
                    self.assertGreaterEqual(row[key], 0.0, key)
            self.assertEqual(len(rows[-1]["storms_cpu_us"]), 1)
        self.assertIn("N stopped at 600: descriptor limit", run.stdout)
        self.assertIn("ulimit -Hn", run.stdout)
        for _, label, _ in _scale.FIGURES:
            self.assertIn(label, run.stdout)
        if "no chart" not in run.stdout:
            self.assertEqual(path.with_suffix(".png").read_bytes()[:4], b"\x89PNG")


class ScaleTableTests(SynchronousTestCase):
    """
    The benchmarks page shows the tracked scale run, and the bench's README
    says where its N stopped.
    """

    def tracked(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((ROOT / "bench" / "scale.json").read_text())
        return data

    def test_the_benchmarks_page_shows_the_tracked_scale_run(self) -> None:
        data = self.tracked()
        page = (ROOT / "docs" / "benchmarks.md").read_text()
        shown = page.partition(_scale.START)[2].partition(_scale.END)[0]
        self.assertEqual(shown.strip(), _scale.table(data).strip())
        self.assertIn(f"N stopped at {data['sizes'][-1]:,}", shown)

    def test_the_bench_readme_says_how_far_n_went_and_why(self) -> None:
        data = self.tracked()
        text = " ".join((ROOT / "bench" / "README.md").read_text().split())
        self.assertEqual(data["limit"]["stopped_by"], "descriptor limit")
        hard, largest = data["limit"]["nofile_hard"], data["sizes"][-1]
        self.assertEqual(largest, hard - _scale.RESERVE)
        self.assertIn(f"a hard limit of {hard:,} ", text)
        self.assertIn(f"N goes to {largest:,}", text)

    def test_update_replaces_the_table_between_the_markers(self) -> None:
        data = self.tracked()
        path = Path(temporary_directory(self)) / "page.md"
        path.write_text(f"before\n{_scale.START}\nold\n{_scale.END}\nafter\n")
        _scale.update(path, data)
        text = path.read_text()
        self.assertNotIn("\nold\n", text)
        self.assertIn(_scale.table(data), text)
        self.assertTrue(text.endswith(f"{_scale.END}\nafter\n"))
