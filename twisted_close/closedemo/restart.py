"""
Restart under load: on SIGHUP a generation of closedemo starts the next one
as a fresh process (a fresh exec of the same command line, so a new version
installed since is picked up), hands it the listening sockets, and once the
next one says it is serving, stops accepting, finishes every request in hand
(up to C{--shutdown-grace}) and exits.  The listening sockets never close,
so no connection is refused: a connection waits in the kernel's queue until
a generation accepts it.

Every generation counts into one shared memory, handed on with the sockets:
L{GENERATIONS} sets of slots (one slot per process of a generation), so that
C{/stats} sums what the old generation still finishes with what the new one
does, and no total goes down.  A generation takes the set after its
predecessor's, carrying on from what a long-gone generation left there.

The hand-over is in one environment variable, L{VARIABLE}: JSON with the
generation's number, its set, the descriptors of the listening sockets (in
C{--listen} order), of the shared memory, and of the pipe on which it says
C{ready}.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from twisted.application.service import IService, Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorCore, IReactorProcess, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from .. import Ledger
from ..ledger import Totals
from .shared import SharedCounters

__all__ = ["GENERATIONS", "VARIABLE", "Generation", "Inherited", "inherited"]

log = Logger(namespace="twisted_close")

VARIABLE = "CLOSEDEMO_INHERITED"
"""The environment variable that hands a generation its sockets."""

GENERATIONS = 4
"""Sets of slots in the shared memory: the generations alive at once (the
serving one and those still finishing their requests)."""

SETTLE = 0.5
"""Seconds an old generation still answers requests that arrive on the
connections it accepted just before it stopped accepting."""

READY_BOUND = 60.0
"""Seconds the next generation has to say it serves; past them it is
stopped, and the old generation carries on."""

PUBLISH_EVERY = 0.01
"""Seconds between two publications of a single process's counters while
an old generation finishes its requests."""

_READY_FD = 3
_SHARED_FD = 4
_FIRST_LISTENER_FD = 5


@dataclass
class Inherited:
    """
    What a generation was handed by its predecessor.
    """

    generation: int
    set: int
    listen: list[int]
    shared: int
    slots: int
    ready: int


def inherited(environ: dict[str, str] | None = None) -> Inherited | None:
    """
    What this process was handed, if it is a restarted generation.
    """
    text = (os.environ if environ is None else environ).get(VARIABLE)
    if not text:
        return None
    found = json.loads(text)
    return Inherited(**found)


def socket_family(fd: int) -> socket.AddressFamily:
    """
    The address family of the listening socket C{fd}.
    """
    probe = socket.socket(fileno=fd)
    try:
        return probe.family
    finally:
        probe.detach()


def _environment() -> dict[str, str]:
    # systemd's word on its sockets was for this process alone (its
    # LISTEN_PID says so): the next generation is handed them by us.
    names = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")
    return {k: v for k, v in os.environ.items() if k not in names}


def _alive(pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Generation(Service):
    """
    This process's generation: the shared memory it counts into, the SIGHUP
    that starts the next one, and the hand-over.

    @ivar width: slots per generation (the workers, or 1).
    @ivar ledger: the single process's ledger (C{None} with workers, who
        publish their own).
    """

    name = "generation"

    def __init__(
        self,
        reactor: Any,
        *,
        width: int,
        ledger: Ledger | None,
        handed: Inherited | None,
        listening: Callable[[], Sequence[int]],
        serving: Callable[[], bool],
        stop_listening: Callable[[], Deferred[Any]],
        settle: float = SETTLE,
        twistd: Any = None,
        unfit: str | None = None,
    ) -> None:
        """
        @param handed: what the previous generation handed over, if any.
        @param listening: the descriptors of the listening sockets, in
            C{--listen} order, to hand on.
        @param serving: whether this generation serves yet (its workers
            all started), to say C{ready} to the previous one.
        @param stop_listening: stop accepting, the sockets left open for
            the next generation.
        @param settle: seconds between that and the drain.
        @param twistd: twistd's own options, whose pidfile is handed on.
        @param unfit: why a restart cannot be made, if it cannot.
        """
        self.reactor = reactor
        self.width = width
        self.ledger = ledger
        self.handed = handed
        self.number = 1 if handed is None else handed.generation
        self.set = 0 if handed is None else handed.set
        self._listening = listening
        self._serving = serving
        self._stop_listening = stop_listening
        self._settle = settle
        self._twistd = twistd
        self._unfit = unfit
        self._shared: SharedCounters | None = None
        self._next: _Next | None = None
        self._publisher: LoopingCall | None = None
        self._readiness: LoopingCall | None = None
        self.handing_over = False

    @property
    def shared(self) -> SharedCounters:
        """
        The shared memory of every generation, from when this one started.
        """
        if self._shared is None:
            raise RuntimeError("the generation has not started")
        return self._shared

    @property
    def base(self) -> int:
        """
        The first slot of this generation's set.
        """
        return self.set * self.width

    def privilegedStartService(self) -> None:
        super().privilegedStartService()  # type: ignore[no-untyped-call]
        # At once: twistd has just written its pidfile, and a SIGHUP sent
        # by it before a handler is in place would end the process.
        self._install()
        if self.handed is None:
            self._shared = SharedCounters.create(GENERATIONS * self.width)
        else:
            self._shared = SharedCounters.adopt(
                self.handed.shared, self.handed.slots, keep=True
            )
        for slot in range(self.base, self.base + self.width):
            state = self.shared.read(slot)
            if state is not None and state.get("pid") is not None:
                # A generation that died without settling its slot.
                self.shared.bury(slot)
            else:
                self.shared.release(slot)
        if self.ledger is not None:
            previous = self.shared.read(self.base)
            if previous is not None:
                # Carry on from the generation that used this set before.
                self.ledger.restore(previous)
            self.publish()

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        core = cast(IReactorCore, self.reactor)
        # After the drain: the last counts, and the slot left for a later
        # generation.
        core.addSystemEventTrigger("after", "shutdown", self._leave)
        if self.handed is not None:
            self._readiness = LoopingCall(self._say_ready)
            self._readiness.clock = cast(IReactorTime, self.reactor)
            core.callWhenRunning(self._readiness.start, 0.05)

    def _install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        # Run by the reactor, once it runs: the services have all started.
        call = self.reactor.callFromThread
        signal.signal(signal.SIGHUP, lambda number, frame: call(self.restart))

    def _say_ready(self) -> None:
        handed = self.handed
        if handed is None or not self._serving():
            return
        if self._readiness is not None and self._readiness.running:
            self._readiness.stop()
        try:
            os.write(handed.ready, b"ready\n")
        except OSError:
            pass  # the old generation has gone: nobody to tell
        os.close(handed.ready)
        log.info(
            "closedemo generation {generation} (pid {pid}) serving",
            generation=self.number,
            pid=os.getpid(),
        )

    def publish(self, *, leaving: bool = False) -> None:
        """
        Write the single process's counters into its slot (C{leaving}: for
        the last time, the slot then free for a later generation).
        """
        if self.ledger is None or self._shared is None:
            return
        pid = None if leaving else os.getpid()
        state = {**self.ledger.state(), "worker": self.base, "pid": pid}
        self._shared.publish(self.base, state)

    def totals(self) -> Totals:
        """
        Every generation's counters: this process's as they are now (so
        that what it answers never lags behind itself), the others' as
        they last published them.
        """
        if self._shared is None:
            if self.ledger is None:
                return Totals()
            return self.ledger.totals()
        self.publish()
        return self._shared.totals()

    def restart(self) -> None:
        """
        Start the next generation (SIGHUP).
        """
        if self._unfit is not None:
            log.warn("closedemo: {why}; SIGHUP ignored", why=self._unfit)
            return
        if not self.running:
            # A stop has begun (or nothing has started): no sockets to hand.
            log.warn("closedemo: stopping; SIGHUP ignored")
            return
        if self._next is not None or self.handing_over:
            log.warn("closedemo: a restart is already under way; SIGHUP ignored")
            return
        successor = (self.set + 1) % GENERATIONS
        base = successor * self.width
        busy = [
            s
            for slot in range(base, base + self.width)
            if (s := self.shared.read(slot)) is not None and _alive(s.get("pid"))
        ]
        if busy:
            log.warn(
                "closedemo: {count} older generations are still finishing their "
                "requests; SIGHUP ignored, send it again later",
                count=GENERATIONS - 1,
            )
            return
        listening = list(self._listening())
        handed = {
            "generation": self.number + 1,
            "set": successor,
            "listen": [_FIRST_LISTENER_FD + n for n in range(len(listening))],
            "shared": _SHARED_FD,
            "slots": self.shared.slots,
            "ready": _READY_FD,
        }
        fds: dict[int, int | str] = {0: 0, 1: 1, 2: 2, _READY_FD: "r"}
        fds[_SHARED_FD] = self.shared.fileno()
        for n, fd in enumerate(listening):
            fds[_FIRST_LISTENER_FD + n] = fd
        pidfile = self._release_pidfile()
        self._next = _Next(self, pidfile)
        argv = [sys.executable, *sys.orig_argv[1:]]
        try:
            process = cast(IReactorProcess, self.reactor).spawnProcess(
                self._next,
                sys.executable,
                argv,
                env={**_environment(), VARIABLE: json.dumps(handed)},
                childFDs=fds,
            )
        except Exception:
            log.failure("closedemo: the next generation could not be started")
            self._failed(pidfile)
            return
        self._next.pid = process.pid
        self._next.process = process
        self._next.deadline = cast(IReactorTime, self.reactor).callLater(
            READY_BOUND, self._next.give_up
        )
        log.info(
            "closedemo generation {generation} (pid {pid}) starting generation "
            "{next} (pid {child})",
            generation=self.number,
            pid=os.getpid(),
            next=self.number + 1,
            child=process.pid,
        )

    def _release_pidfile(self) -> str | None:
        # twistd refuses to start while its pidfile names a live process,
        # and removes the file when it exits: hand the file on instead.
        config = self._twistd
        pidfile = None if config is None else config.get("pidfile")
        if not pidfile:
            return None
        try:
            os.unlink(pidfile)
        except FileNotFoundError:
            pass
        config["pidfile"] = ""
        return str(pidfile)

    def _failed(self, pidfile: str | None) -> None:
        self._next = None
        if pidfile is not None and self._twistd is not None:
            with open(pidfile, "w") as file:
                file.write(str(os.getpid()))
            self._twistd["pidfile"] = pidfile

    def handover(self, successor: int) -> None:
        """
        The next generation serves: stop accepting, finish what is in hand.
        """
        if self.handing_over:
            return
        self.handing_over = True
        log.info(
            "closedemo generation {next} (pid {child}) took over; generation "
            "{generation} (pid {pid}) stops accepting and finishes its requests",
            next=self.number + 1,
            child=successor,
            generation=self.number,
            pid=os.getpid(),
        )
        if self.ledger is not None:
            # The next generation reads our counters while we finish.
            self._publisher = LoopingCall(self.publish)
            self._publisher.clock = cast(IReactorTime, self.reactor)
            self._publisher.start(PUBLISH_EVERY)
        Deferred.fromCoroutine(self._hand_over())

    async def _hand_over(self) -> None:
        await self._stop_listening()
        # A request on a connection accepted just before is still answered.
        await deferLater(cast(IReactorTime, self.reactor), self._settle, lambda: None)
        cast(IReactorCore, self.reactor).stop()

    def stopService(self) -> None:
        super().stopService()  # type: ignore[no-untyped-call]
        if self._readiness is not None and self._readiness.running:
            self._readiness.stop()

    def _leave(self) -> None:
        if self._publisher is not None and self._publisher.running:
            self._publisher.stop()
        if self.ledger is not None and self._shared is not None:
            # With workers, the pool settles their slots and closes it.
            self.publish(leaving=True)
            self._shared.close()
            self._shared = None


class _Next(ProcessProtocol):
    """
    The next generation, as its predecessor sees it until it is ready.
    """

    def __init__(self, generation: Generation, pidfile: str | None) -> None:
        self.generation = generation
        self.pidfile = pidfile
        self.pid: int | None = None
        self.process: Any = None
        self.deadline: Any = None
        self.ready = False

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD == _READY_FD and b"ready" in data and not self.ready:
            self.ready = True
            if self.deadline is not None and self.deadline.active():
                self.deadline.cancel()
            self.generation.handover(self.pid or 0)

    def give_up(self) -> None:
        # Two generations would serve on and on, and no SIGHUP be heard.
        log.warn(
            "closedemo: generation {next} (pid {pid}) did not say it serves "
            "within {bound:g} s; stopping it",
            next=self.generation.number + 1,
            pid=self.pid,
            bound=READY_BOUND,
        )
        try:
            self.process.signalProcess("KILL")
        except Exception:
            pass  # it has just ended

    def processEnded(self, reason: Failure) -> None:
        if self.deadline is not None and self.deadline.active():
            self.deadline.cancel()
        if self.ready:
            return
        log.warn(
            "closedemo: generation {next} (pid {pid}) ended before serving; "
            "generation {generation} carries on",
            next=self.generation.number + 1,
            pid=self.pid,
            generation=self.generation.number,
        )
        self.generation._failed(self.pidfile)


def stop_services(services: Sequence[IService]) -> Callable[[], Deferred[Any]]:
    """
    What stops accepting on C{services} (the listening ones) and takes them
    out of the application, so that the stop that follows leaves them be.
    """

    def stop() -> Deferred[Any]:
        async def each() -> None:
            for service in services:
                await maybeDeferred(service.disownServiceParent)

        return Deferred.fromCoroutine(each())

    return stop
