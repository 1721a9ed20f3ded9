"""
Every Python sample in the README runs, and does what the text says.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site

from twisted_close import DelayedResource, Ending, Ledger
from twisted_close.testing import InMemoryServer

README = Path(__file__).resolve().parent.parent / "README.md"
SAMPLES = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def run(marker: str) -> dict[str, Any]:
    """
    Run the one README sample that holds C{marker}; return its names.
    """
    [source] = [s for s in SAMPLES if marker in s]
    namespace: dict[str, Any] = {"__name__": "readme_sample"}
    exec(compile(source, str(README), "exec"), namespace)
    return namespace


class ReadmeTests(SynchronousTestCase):
    def test_every_sample_is_tested_here(self) -> None:
        markers = [
            'root.putChild(b"slow"',
            "class Report",
            "class Search",
            "def prices",
            "app = Klein()",
            "finished = server.get",
        ]
        self.assertEqual(len(SAMPLES), len(markers))
        for marker in markers:
            self.assertEqual(len([s for s in SAMPLES if marker in s]), 1, marker)

    def test_embedding_sample_serves_and_reports(self) -> None:
        sample = run('root.putChild(b"slow"')
        slow = sample["root"].children[b"slow"]
        self.assertIsInstance(slow, DelayedResource)
        # The sample uses the global reactor; drive it on a Clock instead.
        slow.clock = clock = Clock()
        server = InMemoryServer(sample["site"], clock=clock)
        done, left = server.get("/slow"), server.get("/slow/deeper")
        left.reset()
        clock.advance(2)
        assert done.response is not None
        self.assertEqual(done.response.body, b"<p>done</p>")
        self.assertEqual(
            sample["ledger"].snapshot(),
            {
                "pending": 0,
                "completed": 1,
                "interrupted": 1,
                "rejected": 0,
                "server_ended": 0,
            },
        )

    def test_cancel_on_disconnect_sample_cancels_the_call(self) -> None:
        sample = run("class Report")
        clock, ledger = Clock(), Ledger()
        server = InMemoryServer(sample["Report"](clock, ledger), clock=clock)
        done, left = server.get("/"), server.get("/")
        server.advance(1)
        left.close()
        server.advance(4)
        assert done.response is not None
        self.assertEqual(done.response.body, b"report ready")
        self.assertIsNone(left.response)
        self.assertEqual((ledger.completed, ledger.interrupted), (1, 1))
        done.close()  # its keep-alive idle timer goes with it
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_async_sample_is_cancelled_and_cleans_up(self) -> None:
        sample = run("class Search")
        clock, ledger = Clock(), Ledger()
        search = sample["Search"](clock=clock, ledger=ledger)
        server = InMemoryServer(search, clock=clock)
        done, left = server.get("/?q=a"), server.get("/?q=b")
        server.advance(1)
        left.close()
        self.assertEqual(search.log, ["cleaned up"])
        server.advance(2)
        assert done.response is not None
        self.assertEqual(done.response.body, b"results")
        self.assertEqual(search.log, ["cleaned up", "cleaned up"])
        self.assertEqual((ledger.completed, ledger.interrupted), (1, 1))

    def test_event_source_sample_streams_every_other_tick(self) -> None:
        sample = run("def prices")
        server = InMemoryServer(sample["events"], clock=sample["clock"])
        client = server.get("/")
        for _ in range(4):
            server.advance(0.5)
        self.assertIn(
            b'event: price\nid: 2\ndata: {"price": 102}\n\n', client.transport.value()
        )
        self.assertEqual(client.transport.value().count(b"event: price"), 2)
        client.close()
        self.assertEqual(sample["ledger"].interrupted, 1)

    def test_klein_sample_is_cancelled_when_the_client_leaves(self) -> None:
        sample = run("app = Klein()")
        sample["slow"].clock = clock = Clock()
        site = Site(sample["app"].resource(), reactor=clock)
        server = InMemoryServer(site, clock=clock)
        done, left = server.get("/slow"), server.get("/slow/x")
        left.reset()
        clock.advance(2)
        assert done.response is not None
        self.assertEqual(done.response.body, b"slow hello")
        ledger: Ledger = sample["ledger"]
        self.assertEqual((ledger.completed, ledger.interrupted), (1, 1))
        self.assertEqual(ledger.interruptions[Ending.CLIENT_RESET], 1)

    def test_testing_sample_runs_its_own_assertions(self) -> None:
        sample = run("finished = server.get")
        self.assertEqual(sample["ledger"].interrupted, 1)


class EndingsTableTests(SynchronousTestCase):
    def test_the_endings_table_lists_every_ending_once(self) -> None:
        """
        Whoever adds an L{Ending} adds its row to "What each ending means",
        and no row names an ending that does not exist.
        """
        text = README.read_text()
        section = text.split("\n## What each ending means\n", 1)[1].split("\n## ")[0]
        rows = [line for line in section.splitlines() if line.startswith("| `")]
        reasons = [re.match(r"\| `([^`]+)` \|", row).group(1) for row in rows]  # type: ignore[union-attr]
        self.assertEqual(len(reasons), len(set(reasons)))
        self.assertEqual(sorted(reasons), sorted(e.value for e in Ending))
        for row in rows:
            # reason, cause, certainty: each said.
            cells = [c.strip() for c in row.strip("|").split(" | ")]
            self.assertEqual(len(cells), 3, row)
            self.assertTrue(all(cells), row)
