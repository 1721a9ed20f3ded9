"""
A generation of closedemo and the next one (L{restart}): what is handed
on, when a SIGHUP is refused, the pidfile, and the counters that carry
over; the process and the reactor faked.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ProcessTerminated
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from twisted_close import Ledger
from twisted_close.closedemo import tap
from twisted_close.closedemo.restart import (
    GENERATIONS,
    READY_BOUND,
    SETTLE,
    VARIABLE,
    Generation,
    Inherited,
    inherited,
)
from twisted_close.closedemo.shared import SharedCounters

from .helpers import self_signed, temporary_directory


class _Process:
    pid = 4343

    def __init__(self) -> None:
        self.signals: list[str] = []

    def signalProcess(self, name: str) -> None:
        self.signals.append(name)


class FakeReactor(Clock):
    """
    Enough of a reactor for a generation: time, a stop, and a spawn that
    records what it was asked.
    """

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[dict[str, Any]] = []
        self.stopped = False
        self.failing = False

    def spawnProcess(
        self, protocol: Any, executable: str, args: list[str], **kw: Any
    ) -> _Process:
        if self.failing:
            raise OSError("no more processes")
        process = _Process()
        self.spawned.append(
            {"protocol": protocol, "args": args, "process": process, **kw}
        )
        return process

    def stop(self) -> None:
        self.stopped = True

    def callWhenRunning(self, f: Any, *a: Any, **kw: Any) -> None:
        pass

    def addSystemEventTrigger(self, *args: Any) -> None:
        pass

    def callFromThread(self, f: Any, *a: Any) -> None:
        f(*a)


def _reaped() -> int:
    # A pid that was a process's a moment ago: it has ended.
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


class GenerationTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = FakeReactor()
        self.ledger = Ledger(self.reactor)
        self.stopped_listening: list[bool] = []
        self.twistd: dict[str, Any] = {"pidfile": ""}

    def generation(
        self, handed: Inherited | None = None, unfit: str | None = None
    ) -> Generation:
        def stop_listening() -> Deferred[None]:
            self.stopped_listening.append(True)
            return succeed(None)

        generation = Generation(
            self.reactor,
            width=1,
            ledger=self.ledger,
            handed=handed,
            listening=lambda: [7, 8],
            serving=lambda: True,
            stop_listening=stop_listening,
            twistd=self.twistd,
            unfit=unfit,
        )
        # Its SIGHUP handler is for a real server: put this process's back.
        self.addCleanup(signal.signal, signal.SIGHUP, signal.getsignal(signal.SIGHUP))
        generation.privilegedStartService()
        generation.startService()
        self.addCleanup(generation._leave)
        return generation

    def test_the_next_generation_is_a_fresh_exec_handed_the_sockets(self) -> None:
        generation = self.generation()
        generation.restart()
        [spawned] = self.reactor.spawned
        self.assertEqual(spawned["args"], [sys.executable, *sys.orig_argv[1:]])
        handed = inherited(spawned["env"])
        self.assertEqual(
            handed,
            Inherited(
                generation=2,
                set=1,
                listen=[5, 6],
                shared=4,
                slots=GENERATIONS,
                ready=3,
            ),
        )
        self.assertEqual(
            spawned["childFDs"],
            {0: 0, 1: 1, 2: 2, 3: "r", 4: generation.shared.fileno(), 5: 7, 6: 8},
        )
        self.assertIsNone(inherited({}))

    def test_ready_stops_accepting_then_stops_after_the_settle(self) -> None:
        generation = self.generation()
        generation.restart()
        successor = self.reactor.spawned[0]["protocol"]
        successor.childDataReceived(3, b"ready\n")
        self.assertEqual(self.stopped_listening, [True])
        self.assertFalse(self.reactor.stopped)
        self.reactor.advance(SETTLE)
        self.assertTrue(self.reactor.stopped)

    def test_a_second_sighup_while_one_is_under_way_is_ignored(self) -> None:
        generation = self.generation()
        generation.restart()
        with capturedLogs() as events:
            generation.restart()
        self.assertEqual(len(self.reactor.spawned), 1)
        self.assertIn(
            "a restart is already under way; SIGHUP ignored",
            formatEvent(events[-1]),
        )

    def test_no_restart_while_the_next_set_is_still_in_use(self) -> None:
        generation = self.generation()
        # A generation three restarts old still finishes its requests.
        generation.shared.publish(1, {**Ledger().state(), "pid": os.getpid()})
        with capturedLogs() as events:
            generation.restart()
        self.assertEqual(self.reactor.spawned, [])
        self.assertIn("SIGHUP ignored, send it again later", formatEvent(events[-1]))

    def test_the_pidfile_is_handed_on_and_taken_back_if_it_fails(self) -> None:
        pidfile = Path(temporary_directory(self)) / "twistd.pid"
        pidfile.write_text("1234")
        self.twistd["pidfile"] = str(pidfile)
        generation = self.generation()
        generation.restart()
        # The next twistd would refuse to start while it names us, and
        # ours must not remove the next one's at our exit.
        self.assertFalse(pidfile.exists())
        self.assertEqual(self.twistd["pidfile"], "")
        successor = self.reactor.spawned[0]["protocol"]
        with capturedLogs() as events:
            successor.processEnded(Failure(ProcessTerminated(exitCode=1)))
        self.assertIn("ended before serving", formatEvent(events[-1]))
        self.assertEqual(pidfile.read_text(), str(os.getpid()))
        self.assertEqual(self.twistd["pidfile"], str(pidfile))
        # And a later SIGHUP tries again.
        generation.restart()
        self.assertEqual(len(self.reactor.spawned), 2)

    def test_a_next_generation_that_never_serves_is_stopped(self) -> None:
        generation = self.generation()
        generation.restart()
        spawned = self.reactor.spawned[0]
        self.reactor.advance(READY_BOUND - 1)
        self.assertEqual(spawned["process"].signals, [])
        with capturedLogs() as events:
            self.reactor.advance(1)
        self.assertIn("did not say it serves within 60 s", formatEvent(events[-1]))
        self.assertEqual(spawned["process"].signals, ["KILL"])
        spawned["protocol"].processEnded(Failure(ProcessTerminated(signal=9)))
        self.assertFalse(self.reactor.stopped)
        # It carries on, and a later SIGHUP tries again.
        generation.restart()
        self.assertEqual(len(self.reactor.spawned), 2)

    def test_a_listener_it_cannot_hand_over_says_so(self) -> None:
        tls = self_signed(Path(temporary_directory(self))).listen
        for description in (tls, "unix:/run/s.sock"):
            unfit = tap._unfit(["tcp:8080", description])
            self.assertIn(f"--listen {description!r}: a restart hands over", str(unfit))
            generation = self.generation(unfit=unfit)
            with capturedLogs() as events:
                generation.restart()
            self.assertEqual(self.reactor.spawned, [])
            self.assertIn(f"{unfit}; SIGHUP ignored", formatEvent(events[-1]))
        self.assertIsNone(tap._unfit(["tcp:8080", "systemd:domain=INET6:index=1"]))

    def test_no_restart_once_a_stop_has_begun(self) -> None:
        generation = self.generation()
        generation.stopService()
        with capturedLogs() as events:
            generation.restart()
        self.assertEqual(self.reactor.spawned, [])
        self.assertIn("stopping; SIGHUP ignored", formatEvent(events[-1]))

    def test_a_spawn_that_fails_leaves_it_serving(self) -> None:
        self.reactor.failing = True
        generation = self.generation()
        generation.restart()
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.reactor.failing = False
        generation.restart()
        self.assertEqual(len(self.reactor.spawned), 1)

    def test_totals_are_every_generations(self) -> None:
        generation = self.generation()
        self.ledger.restore({**Ledger().state(), "completed": 3})
        # The old generation, still finishing, in another set.
        other = {**Ledger().state(), "completed": 5, "pending": 2, "pid": 1}
        generation.shared.publish(3, other)
        totals = generation.totals()
        self.assertEqual((totals.completed, totals.pending), (8, 2))

    def test_a_generation_carries_on_from_the_set_it_takes(self) -> None:
        shared = SharedCounters.create(GENERATIONS)
        # A generation long gone left 4 completed in set 2.
        shared.publish(2, {**Ledger().state(), "completed": 4, "pid": None})
        handed = Inherited(2, 2, [], os.dup(shared.fileno()), GENERATIONS, -1)
        generation = self.generation(handed)
        self.assertEqual(self.ledger.completed, 4)
        self.assertEqual(generation.totals().completed, 4)
        shared.close()

    def test_a_set_left_by_a_killed_generation_is_settled(self) -> None:
        shared = SharedCounters.create(GENERATIONS)
        dead = _reaped()
        state = {**Ledger().state(), "completed": 1, "pending": 2, "pid": dead}
        shared.publish(1, state)
        shared.limits(1).add(False, "10.0.0.1", 2)
        handed = Inherited(2, 1, [], os.dup(shared.fileno()), GENERATIONS, -1)
        generation = self.generation(handed)
        totals = generation.totals()
        self.assertEqual(
            (totals.completed, totals.pending, totals.server_ended), (1, 0, 2)
        )
        self.assertEqual(shared.limits(0).total(False), 0)
        shared.close()


class InheritedTests(SynchronousTestCase):
    def test_the_variable_is_json(self) -> None:
        text = json.dumps(
            {
                "generation": 3,
                "set": 2,
                "listen": [5],
                "shared": 4,
                "slots": 8,
                "ready": 3,
            }
        )
        self.assertEqual(inherited({VARIABLE: text}), Inherited(3, 2, [5], 4, 8, 3))
