"""
Counters that several worker processes share and sum.
"""

from __future__ import annotations

import json
import os
import signal
import struct
from typing import Any
from unittest import mock

from twisted.internet.address import IPv4Address
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from twisted_close import Ending, Ledger, Limits
from twisted_close._ledger import Totals
from twisted_close.closedemo.shared import (
    BUCKETS,
    COPY,
    SLOT,
    SharedCounters,
    _bucket,
)
from twisted_close.closedemo.tap import Options
from twisted_close.closedemo.workers import RESTART_PAUSE, WorkerPool, _Worker

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


HEAD = struct.Struct("<QI")


def leave_mid_write(
    shared: SharedCounters, slot: int, state: dict[str, object]
) -> None:
    """
    Do what a writer killed in the middle of publishing C{state} leaves:
    the copy it writes marked odd and only half of the state in it.
    """
    base = slot * SLOT
    heads = [HEAD.unpack_from(shared._map, base + copy * COPY) for copy in (0, 1)]
    copy = 0 if heads[0][0] <= heads[1][0] else 1
    top = max(heads[0][0], heads[1][0])
    data = json.dumps(state).encode()
    start = base + copy * COPY
    HEAD.pack_into(shared._map, start, top + 1, 0)
    half = data[: len(data) // 2]
    shared._map[start + HEAD.size : start + HEAD.size + len(half)] = half


class SharedCountersTests(SynchronousTestCase):
    def counters(self, slots: int) -> SharedCounters:
        shared = SharedCounters.create(slots)
        self.addCleanup(shared.close)
        return shared

    def test_slots_are_summed(self) -> None:
        shared = self.counters(3)
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
        writer = self.counters(2)
        # What a worker does with the descriptor it inherits.
        reader = SharedCounters.adopt(os.dup(writer.fileno()), 2)
        self.addCleanup(reader.close)
        self.assertEqual(reader.fileno(), -1)
        writer.publish(1, {**busy_ledger().state(), "pid": 7})
        state = reader.read(1)
        assert state is not None
        self.assertEqual(state["pid"], 7)
        writer.publish(1, Ledger().state())
        self.assertEqual(reader.totals().completed, 0)

    def test_a_slot_left_mid_write_is_read_from_its_whole_copy(self) -> None:
        shared = self.counters(2)
        first = {**busy_ledger().state(), "pid": 1}
        shared.publish(1, first)
        shared.publish(1, {**first, "completed": 5})
        leave_mid_write(shared, 1, {**first, "completed": 6})
        # Any number of reads, by any reader: the last whole state.
        reader = SharedCounters.adopt(os.dup(shared.fileno()), 2)
        self.addCleanup(reader.close)
        for counters in (shared, reader, shared):
            state = counters.read(1)
            assert state is not None
            self.assertEqual(state["completed"], 5)
            self.assertEqual(counters.totals().completed, 5)

    def test_a_first_state_left_mid_write_reads_as_none(self) -> None:
        shared = self.counters(1)
        leave_mid_write(shared, 0, busy_ledger().state())
        self.assertIsNone(shared.read(0))
        self.assertEqual(shared.totals().snapshot()["completed"], 0)

    def test_the_next_publish_repairs_a_slot_left_mid_write(self) -> None:
        shared = self.counters(1)
        state = busy_ledger().state()
        shared.publish(0, state)
        leave_mid_write(shared, 0, {**state, "completed": 9})
        # The copy left odd is the one written next: the whole one is kept
        # while it is.
        shared.publish(0, {**state, "completed": 10})
        shared.publish(0, {**state, "completed": 11})
        new = shared.read(0)
        assert new is not None
        self.assertEqual(new["completed"], 11)
        heads = [HEAD.unpack_from(shared._map, copy * COPY)[0] for copy in (0, 1)]
        self.assertEqual([h % 2 for h in heads], [0, 0])

    def test_a_dead_writers_pending_requests_count_as_worker_died(self) -> None:
        shared = self.counters(2)
        ledger = busy_ledger()
        shared.publish(1, {**ledger.state(), "pid": 7})
        before = shared.totals()
        self.assertEqual(before.pending, 1)
        leave_mid_write(shared, 1, Ledger().state())
        self.assertEqual(shared.bury(1), 1)
        after = shared.totals()
        self.assertEqual(after.pending, 0)
        self.assertEqual(after.server_endings[Ending.WORKER_DIED], 1)
        self.assertEqual(after.server_ended, before.server_ended + 1)
        self.assertEqual(
            after.completed + after.interrupted + after.server_ended + after.rejected,
            before.completed
            + before.interrupted
            + before.server_ended
            + before.rejected
            + before.pending,
        )
        state = shared.read(1)
        assert state is not None
        # No process writes it until the next worker does.
        self.assertIsNone(state["pid"])
        # Its successor carries the count on.
        successor = Ledger()
        successor.restore(state)
        self.assertEqual(successor.server_endings[Ending.WORKER_DIED], 1)
        self.assertEqual(shared.bury(0), 0)
        self.assertEqual(shared.bury(1), 0)
        self.assertEqual(shared.totals().server_ended, after.server_ended)

    def test_a_read_that_a_writer_overtakes_is_done_again(self) -> None:
        shared = self.counters(1)
        state = Ledger().state()
        shared.publish(0, {**state, "completed": 1})
        shared.publish(0, {**state, "completed": 2})
        real = shared._head
        calls: list[int] = []

        def overtaken(slot: int, copy: int) -> tuple[int, int]:
            calls.append(copy)
            if len(calls) == 4:
                # Between the reader's two looks at the newest copy, the
                # writer writes both: the older whole copy it read is stale.
                shared.publish(0, {**state, "completed": 3})
                shared.publish(0, {**state, "completed": 4})
            return real(slot, copy)

        with mock.patch.object(shared, "_head", overtaken):
            found = shared.read(0)
        assert found is not None
        self.assertEqual(found["completed"], 4)

    def test_a_writer_that_never_pauses_leaves_the_last_state_seen(self) -> None:
        shared = self.counters(1)
        shared.publish(0, {**Ledger().state(), "completed": 1})
        first = shared.read(0)
        moving = iter(range(2, 10**6, 2))

        def never_still(slot: int, copy: int) -> tuple[int, int]:
            return next(moving), 10

        with mock.patch.object(shared, "_head", never_still):
            self.assertEqual(shared.read(0), first)
        fresh = SharedCounters.adopt(os.dup(shared.fileno()), 1)
        self.addCleanup(fresh.close)
        with mock.patch.object(fresh, "_head", never_still):
            self.assertIsNone(fresh.read(0))

    def test_the_memory_has_no_name(self) -> None:
        shared = self.counters(1)
        self.assertEqual(os.fstat(shared.fileno()).st_nlink, 0)

    def test_a_beat_is_seen_by_whoever_shares_the_memory(self) -> None:
        shared = self.counters(2)
        other = SharedCounters.adopt(os.dup(shared.fileno()), 2)
        self.addCleanup(other.close)
        self.assertEqual(other.last_beat(1), 0)
        shared.beat(1, 123456789)
        self.assertEqual((other.last_beat(0), other.last_beat(1)), (0, 123456789))
        shared.beat(1, 0)
        self.assertEqual(other.last_beat(1), 0)

    def test_without_memfd_an_unlinked_file_serves(self) -> None:
        with mock.patch.object(os, "memfd_create", None):
            shared = self.counters(2)
        self.assertEqual(os.fstat(shared.fileno()).st_nlink, 0)
        # Two slots, an 8-byte heartbeat for each, then each one's limit
        # counts: two totals and two tables of BUCKETS 8-byte counters.
        self.assertEqual(
            os.fstat(shared.fileno()).st_size,
            2 * SLOT + 2 * 8 + 2 * 8 * (2 + 2 * BUCKETS),
        )
        shared.publish(1, Ledger().state())
        self.assertIsNotNone(shared.read(1))

    def test_a_state_too_big_for_a_slot_is_refused(self) -> None:
        shared = self.counters(1)
        with self.assertRaises(ValueError):
            shared.publish(0, {"x": "y" * COPY})


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


class _Broken:
    def bury(self, slot: int) -> int:
        raise ZeroDivisionError("broken")


class WorkerEndTests(SynchronousTestCase):
    """
    What the parent does when a worker process ends, the process faked.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.pool = WorkerPool(self.clock, [], 2, {})
        self.pool._shared = SharedCounters.create(2)
        self.addCleanup(self.pool.shared.close)
        self.spawned: list[int] = []
        self.failing_spawns = 0

        def spawn(slot: int) -> None:
            if self.failing_spawns:
                self.failing_spawns -= 1
                raise OSError("no more processes")
            self.spawned.append(slot)

        self.pool._spawn = spawn  # type: ignore[method-assign]

    def end(self, slot: int, reason: Exception) -> tuple[_Worker, list[str]]:
        worker = _Worker(self.pool, slot)
        worker.pid = 4242
        self.pool.workers[slot] = worker
        with capturedLogs() as events:
            worker.processEnded(Failure(reason))
        self.successResultOf(worker.ended)
        return worker, [formatEvent(e) for e in events]

    def test_a_generation_serves_once_every_worker_has_beaten(self) -> None:
        # What a restarted generation waits for before the old one stops.
        self.assertFalse(self.pool.serving())
        for slot in (0, 1):
            self.pool.workers[slot] = _Worker(self.pool, slot)
        self.assertFalse(self.pool.serving())
        self.pool.shared.beat(0, 1)
        self.assertFalse(self.pool.serving())
        self.pool.shared.beat(1, 1)
        self.assertTrue(self.pool.serving())

    def test_a_dead_workers_places_under_the_limits_are_given_back(self) -> None:
        dead, alive = self.pool.shared.limits(1), self.pool.shared.limits(0)
        dead.add(False, "10.0.0.1", 1)
        dead.add(True, "10.0.0.1", 1)
        alive.add(False, "10.0.0.1", 1)
        self.end(1, ProcessTerminated(signal=signal.SIGKILL))
        self.assertEqual((alive.total(False), alive.total(True)), (1, 0))
        self.assertEqual(alive.of(False, "10.0.0.1"), 1)

    def test_a_killed_workers_pending_count_as_worker_died(self) -> None:
        state: dict[str, Any] = {**Ledger().state(), "pending": 3, "pid": 4242}
        self.pool.shared.publish(1, state)
        leave_mid_write(self.pool.shared, 1, {**state, "pending": 4})
        _, lines = self.end(1, ProcessTerminated(signal=signal.SIGKILL))
        self.assertEqual(
            lines,
            [
                "worker 1 (pid 4242) was killed by SIGKILL with 3 requests "
                "pending; starting it again"
            ],
        )
        totals = self.pool.shared.totals()
        self.assertEqual(totals.server_endings, {Ending.WORKER_DIED: 3})
        self.assertEqual(totals.pending, 0)
        self.clock.advance(RESTART_PAUSE)
        self.assertEqual(self.spawned, [1])

    def test_a_failure_while_settling_does_not_stop_the_restart(self) -> None:
        self.pool._shared = _Broken()  # type: ignore[assignment]
        # Not a signal Python names, either.
        _, lines = self.end(0, ProcessTerminated(signal=40))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertIn(
            "worker 0 (pid 4242) was killed by signal 40 with ? requests pending; "
            "starting it again",
            lines,
        )
        self.clock.advance(RESTART_PAUSE)
        self.assertEqual(self.spawned, [0])

    def test_a_worker_that_cannot_be_started_is_tried_again(self) -> None:
        self.failing_spawns = 2
        self.end(0, ProcessDone(0))
        self.clock.advance(RESTART_PAUSE)
        self.clock.advance(RESTART_PAUSE)
        self.assertEqual(self.spawned, [])
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 2)
        self.clock.advance(RESTART_PAUSE)
        self.assertEqual(self.spawned, [0])

    def test_during_a_stop_an_ended_worker_is_counted_not_restarted(self) -> None:
        self.pool.stopping = True
        self.pool.shared.publish(0, {**Ledger().state(), "pending": 2})
        _, lines = self.end(0, ProcessTerminated(signal=signal.SIGKILL))
        self.assertEqual(
            lines, ["worker 0 (pid 4242) was killed by SIGKILL with 2 requests pending"]
        )
        self.assertEqual(self.pool.shared.totals().server_ended, 2)
        self.clock.advance(RESTART_PAUSE * 10)
        self.assertEqual(self.spawned, [])
        # A worker that drained and exited is not worth a line.
        _, lines = self.end(1, ProcessDone(0))
        self.assertEqual(lines, [])


class SharedLimitsTests(SynchronousTestCase):
    """
    The limit counts of the workers: each writes its slot, all read the
    sum, and a dead worker's are given back.
    """

    def setUp(self) -> None:
        self.shared = SharedCounters.create(2)
        self.addCleanup(self.shared.close)

    def test_every_worker_sees_the_sum(self) -> None:
        one, two = self.shared.limits(0), self.shared.limits(1)
        one.add(False, "10.0.0.1", 1)
        two.add(False, "10.0.0.1", 1)
        two.add(False, "10.0.0.2", 1)
        two.add(True, None, 1)
        for view in (one, two):
            self.assertEqual(
                (view.total(False), view.total(True)), (3, 1), "the totals"
            )
            self.assertEqual(view.of(False, "10.0.0.1"), 2)
            self.assertEqual(view.of(False, "10.0.0.2"), 1)
            self.assertEqual(view.of(True, "10.0.0.1"), 0)
        # Another process mapping the same memory sees the same.
        other = SharedCounters.adopt(os.dup(self.shared.fileno()), 2)
        self.addCleanup(other.close)
        self.assertEqual(other.limits(1).of(False, "10.0.0.1"), 2)

    def test_a_cap_held_across_two_workers(self) -> None:
        # Two workers' Limits, one client: five places in all, not per worker.
        workers = [
            Limits(max_pending_per_client=5, counts=self.shared.limits(slot))
            for slot in (0, 1)
        ]
        request = SharedStoreRequest("127.0.0.1")
        admitted = 0
        for n in range(10):
            limits = workers[n % 2]
            if limits.admit(request) is None:  # type: ignore[arg-type]
                limits.began(request, False)  # type: ignore[arg-type]
                admitted += 1
        self.assertEqual(admitted, 5)

    def test_an_old_generations_requests_count_until_they_end(self) -> None:
        # Two generations of two workers (see restart): the old one's
        # pending answers count against the new one's caps.
        shared = SharedCounters.create(4)
        self.addCleanup(shared.close)
        old, new = shared.limits(1), shared.limits(3)
        old.add(False, "10.0.0.1", 1)
        self.assertEqual((new.total(False), new.of(False, "10.0.0.1")), (1, 1))
        old.add(False, "10.0.0.1", -1)
        self.assertEqual(new.total(False), 0)

    def test_a_dead_workers_counts_are_given_back(self) -> None:
        one, two = self.shared.limits(0), self.shared.limits(1)
        one.add(False, "10.0.0.1", 1)
        two.add(False, "10.0.0.1", 1)
        two.add(True, "10.0.0.1", 1)
        self.shared.release(1)
        self.assertEqual((one.total(False), one.total(True)), (1, 0))
        self.assertEqual(one.of(False, "10.0.0.1"), 1)
        self.assertEqual(one.of(True, "10.0.0.1"), 0)

    def test_clients_in_one_bucket_share_a_cap(self) -> None:
        # Said in the docs: a collision only makes the cap stricter.
        first = "10.0.0.1"
        other = next(
            f"10.{a}.{b}.1"
            for a in range(256)
            for b in range(256)
            if f"10.{a}.{b}.1" != first and _bucket(f"10.{a}.{b}.1") == _bucket(first)
        )
        view = self.shared.limits(0)
        view.add(False, first, 1)
        self.assertEqual(view.of(False, other), 1)


class SharedStoreRequest:
    """
    Just enough of a request for L{Limits}: its client's address.
    """

    def __init__(self, host: str) -> None:
        self.host = host

    def getClientAddress(self) -> IPv4Address:
        return IPv4Address("TCP", self.host, 1234)
