"""
Every Python sample in the README runs, and does what the text says.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from twisted_close import DelayedResource, Ledger
from twisted_close.testing import InMemoryServer

README = Path(__file__).resolve().parent.parent / "README.md"


def samples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def run(source: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "readme_sample"}
    exec(compile(source, str(README), "exec"), namespace)
    return namespace


class ReadmeTests(SynchronousTestCase):
    def test_there_are_three_samples(self) -> None:
        self.assertEqual(len(samples()), 3)

    def test_embedding_sample_serves_and_reports(self) -> None:
        sample = run(samples()[0])
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
            {"pending": 0, "completed": 1, "interrupted": 1, "rejected": 0},
        )

    def test_cancel_on_disconnect_sample_cancels_the_call(self) -> None:
        sample = run(samples()[1])
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

    def test_testing_sample_runs_its_own_assertions(self) -> None:
        sample = run(samples()[2])
        self.assertEqual(sample["ledger"].interrupted, 1)
