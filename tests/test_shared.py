"""
Counters that several worker processes share and sum.
"""

from __future__ import annotations

import os
import tempfile

from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from twisted_close import Ending, Ledger
from twisted_close._ledger import Totals
from twisted_close.closedemo.shared import SLOT, SharedCounters
from twisted_close.closedemo.tap import Options

from .helpers import demo_server


def busy_ledger() -> Ledger:
    server, ledger = demo_server(delay=1)
    server.get("/a")
    server.get("/b")
    server.get("/?delay=x")
    server.advance(0.3)
    server.get("/c").reset()
    server.advance(0.7)
    server.get("/still-pending")
    return ledger


class SharedCountersTests(SynchronousTestCase):
    def setUp(self) -> None:
        directory = tempfile.mkdtemp()
        self.path = os.path.join(directory, "counters")
        self.addCleanup(os.rmdir, directory)
        self.addCleanup(os.unlink, self.path)

    def test_slots_are_summed(self) -> None:
        shared = SharedCounters(self.path, 3)
        self.addCleanup(shared.close)
        ledger = busy_ledger()
        shared.publish(0, ledger.state())
        shared.publish(2, ledger.state())
        self.assertIsNone(shared.read(1))
        totals = shared.totals()
        self.assertEqual(
            totals.snapshot(),
            {
                "pending": 2,
                "completed": 4,
                "interrupted": 2,
                "rejected": 2,
                "server_ended": 0,
            },
        )
        self.assertEqual(totals.interruptions[Ending.CLIENT_RESET], 2)
        self.assertEqual(sum(totals.wait_buckets), 2)

    def test_another_process_sees_what_one_published(self) -> None:
        writer = SharedCounters(self.path, 2)
        reader = SharedCounters(self.path, 2)
        self.addCleanup(writer.close)
        self.addCleanup(reader.close)
        writer.publish(1, {**busy_ledger().state(), "pid": 7})
        state = reader.read(1)
        assert state is not None
        self.assertEqual(state["pid"], 7)
        writer.publish(1, Ledger().state())
        self.assertEqual(reader.totals().completed, 0)

    def test_a_half_written_slot_is_not_read(self) -> None:
        shared = SharedCounters(self.path, 1)
        self.addCleanup(shared.close)
        shared.publish(0, Ledger().state())
        # An odd sequence number: its writer is in the middle of writing.
        shared._map[0] = shared._map[0] + 1
        with self.assertRaises(RuntimeError):
            shared.read(0)

    def test_a_state_too_big_for_a_slot_is_refused(self) -> None:
        shared = SharedCounters(self.path, 1)
        self.addCleanup(shared.close)
        with self.assertRaises(ValueError):
            shared.publish(0, {"x": "y" * SLOT})


class LedgerStateTests(SynchronousTestCase):
    def test_a_restored_ledger_carries_on_from_the_state(self) -> None:
        old = busy_ledger()
        new = Ledger()
        new.restore(old.state())
        expected = {**old.snapshot(), "pending": 0}
        self.assertEqual(new.snapshot(), expected)
        self.assertEqual(new.totals().wait_buckets, old.totals().wait_buckets)
        self.assertEqual(Totals.of([old.state()]).snapshot(), old.snapshot())


class WorkerOptionsTests(SynchronousTestCase):
    def test_workers_share_tcp_sockets_only(self) -> None:
        options = Options()
        with self.assertRaises(UsageError) as caught:
            options.parseOptions(["--workers", "2", "--listen", "unix:/tmp/x.sock"])
        self.assertIn("--workers", str(caught.exception))
        for bad in ["0", "65", "two"]:
            with self.assertRaises(UsageError):
                Options().parseOptions(["--workers", bad])
        options = Options()
        options.parseOptions(["--workers", "2"])
        self.assertEqual(options["workers"], 2)
