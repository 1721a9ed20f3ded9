"""
C{--workers N}: N processes serve one listening address.  The parent opens
each listening socket once, without C{SO_REUSEPORT}, and every worker
accepts from that one socket (as nginx and gunicorn do): a worker that stops
owns no accept queue of its own, so the others take every new connection,
and no other process can bind the port beside it.  Each worker beats in
the shared memory; one silent for longer than the liveness bound is killed,
and so ends like a worker that died.  A worker that dies is
reported and started again, the requests it had pending counted as ended by
the server (C{worker died}); a stop tells every worker to stop on its stdin
(its end without that word means the parent has gone), and each drains as a
single process would.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any, cast

from twisted.application.service import Service
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import (
    AdoptedStreamServerEndpoint,
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
)
from twisted.internet.error import ProcessDone
from twisted.internet.interfaces import (
    IProcessTransport,
    IReactorProcess,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..reactors import asyncio_event_loop, tcp_endpoint_address
from ..web import describe_address
from .shared import SharedCounters
from .signals import quiet_repeated_stops

__all__ = ["WorkerPool", "tcp_only"]

log = Logger(namespace="twisted_close")

STARTUP_BOUND = 60.0
"""Seconds a new worker has to beat for the first time."""

RESTART_PAUSE = 1.0
"""Seconds before a worker that died young is started again."""

SHARED_FD = 3
"""The descriptor number of the shared counters in a worker."""

FIRST_LISTENER_FD = 4
"""The descriptor number of the first listening socket in a worker; the
others follow it in the order of C{--listen}."""

STOP = b"stop\n"
"""What the parent writes to a worker's stdin to stop it."""

HANDOVER = b"pass\n"
"""What the parent writes to a worker's stdin to stop it for a restart:
the next generation serves the sockets, so a request that arrives on a
connection accepted just before is still answered."""


def tcp_only(endpoint: IStreamServerEndpoint) -> bool:
    """
    Whether C{endpoint} listens on a plain TCP socket, the only kind the
    workers can share.
    """
    return isinstance(endpoint, (TCP4ServerEndpoint, TCP6ServerEndpoint))


class _Worker(ProcessProtocol):
    def __init__(self, pool: WorkerPool, slot: int) -> None:
        self.pool = pool
        self.slot = slot
        self.started = pool.clock.seconds()
        self.pid: int | None = None
        self.ended: Deferred[None] = Deferred()
        self.born = time.monotonic_ns()
        self.killed = False

    def processEnded(self, reason: Failure) -> None:
        # The pool settles the worker's slot before a stop can close it.
        try:
            self.pool._ended(self, reason)
        finally:
            self.ended.callback(None)


@dataclass
class _Listener:
    description: str
    socket: socket.socket

    @property
    def address(self) -> str:
        host, port = self.socket.getsockname()[:2]
        kind = IPv6Address if self.socket.family == socket.AF_INET6 else IPv4Address
        return describe_address(kind("TCP", host, port))

    def config(self, fd: int) -> list[object]:
        return [fd, int(self.socket.family)]


def open_listener(endpoint: IStreamServerEndpoint) -> socket.socket:
    """
    Bind and listen on the address of a tcp C{endpoint}, with its backlog,
    once for every worker.  No
    C{SO_REUSEPORT}: nobody else may bind the port while it is open.
    """
    v6 = isinstance(endpoint, TCP6ServerEndpoint)
    interface, port, backlog = tcp_endpoint_address(endpoint)
    interface = interface or ("::" if v6 else "")
    sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((interface, port))
        sock.listen(backlog)
        # Shared by every worker (the flag is the socket's, not the
        # descriptor's): a blocking accept would hang a worker that lost
        # the race for a connection.
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class WorkerPool(Service):
    """
    Run C{count} worker processes (L{twisted_close.closedemo.worker}) serving the
    sockets of C{endpoints}, with C{settings} for their demo sites.
    """

    name = "workers"

    def __init__(
        self,
        reactor: Any,
        endpoints: list[tuple[str, IStreamServerEndpoint]],
        count: int,
        settings: dict[str, Any],
        *,
        stop_timeout: float = 30.0,
        liveness: float = 5.0,
        generation: Any = None,
        inherited: list[int] | None = None,
    ) -> None:
        self.reactor = reactor
        self.clock = cast(IReactorTime, reactor)
        self.endpoints = endpoints
        self.count = count
        self.settings = settings
        self.stop_timeout = stop_timeout
        self.liveness = liveness
        self._checker = LoopingCall(self._check_beats)
        self._checker.clock = self.clock
        self.listeners: list[_Listener] = []
        self.workers: dict[int, _Worker] = {}
        self.stopping = False
        # Made when the service starts: building the service has no effects.
        self._shared: SharedCounters | None = None
        # The generation whose shared memory the workers count into (see
        # restart), and the listening sockets it was handed.
        self.generation = generation
        self.inherited = inherited
        self.word = STOP

    @property
    def shared(self) -> SharedCounters:
        """
        The workers' shared counters, from when the service started.
        """
        if self._shared is None:
            raise RuntimeError("the worker pool has not started")
        return self._shared

    def privilegedStartService(self) -> None:
        # Bind now (as root if need be), so a port in use stops twistd at once.
        super().privilegedStartService()  # type: ignore[no-untyped-call]
        if self.inherited is not None:
            # A restarted generation serves the sockets its predecessor had.
            for (description, _), fd in zip(
                self.endpoints, self.inherited, strict=True
            ):
                sock = socket.socket(fileno=fd)
                self.listeners.append(_Listener(description, sock))
            return
        for description, endpoint in self.endpoints:
            if isinstance(endpoint, AdoptedStreamServerEndpoint):
                # Bound and listening already (systemd's): shared as it is.
                sock = socket.socket(fileno=os.dup(endpoint.fileno))
                sock.setblocking(False)
                self.listeners.append(_Listener(description, sock))
                continue
            self.listeners.append(_Listener(description, open_listener(endpoint)))

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        if self.generation is not None:
            self._shared = self.generation.shared
        else:
            self._shared = SharedCounters.create(self.count)
        base = 0 if self.generation is None else self.generation.base
        for listener in self.listeners:
            log.info(
                "closedemo listening on {address} ({description}) with {count} workers",
                address=listener.address,
                description=listener.description,
                count=self.count,
            )
        for slot in range(base, base + self.count):
            self._spawn(slot)
        self._checker.start(min(1.0, self.liveness / 4), now=False)

    def _check_beats(self) -> None:
        # A worker that stops beating (SIGSTOP, a busy loop, a deadlock)
        # still holds the connections it took: end it, so they are counted
        # and its slot serves again.
        now = time.monotonic_ns()
        for worker in list(self.workers.values()):
            if worker.killed:
                continue
            last = self.shared.last_beat(worker.slot)
            since, bound = (
                (last, self.liveness) if last else (worker.born, STARTUP_BOUND)
            )
            silent = (now - since) / 1e9
            if silent > bound:
                worker.killed = True
                log.warn(
                    "worker {slot} (pid {pid}) has not beaten for {silent:.1f} s; "
                    "killing it",
                    slot=worker.slot,
                    pid=worker.pid,
                    silent=silent,
                )
                _signal(worker, signal.SIGKILL)

    def _spawn(self, slot: int) -> None:
        fds = {SHARED_FD: self.shared.fileno()}
        for n, listener in enumerate(self.listeners):
            fds[FIRST_LISTENER_FD + n] = listener.socket.fileno()
        config = {
            "slot": slot,
            "slots": self.shared.slots,
            "shared_fd": SHARED_FD,
            "listen": [
                listener.config(FIRST_LISTENER_FD + n)
                for n, listener in enumerate(self.listeners)
            ],
            "settings": self.settings,
            "reactor": "asyncio" if asyncio_event_loop(self.reactor) else None,
        }
        worker = _Worker(self, slot)
        self.shared.beat(slot, 0)
        self.shared.release(slot)
        process = cast(IReactorProcess, self.reactor).spawnProcess(
            worker,
            sys.executable,
            [
                sys.executable,
                "-m",
                "twisted_close.closedemo.worker",
                json.dumps(config),
            ],
            env=dict(os.environ),
            # stdin is a pipe from us: its end tells the worker we are gone.
            childFDs={0: "w", 1: 1, 2: 2, **fds},
        )
        worker.pid = process.pid
        self.workers[slot] = worker
        log.info("worker {slot} started (pid {pid})", slot=slot, pid=process.pid)

    def _ended(self, worker: _Worker, reason: Failure) -> None:
        # Nothing here may raise: a worker that died, however it died, must
        # be reported and started again.
        current = self.workers.get(worker.slot) is worker
        if current:
            del self.workers[worker.slot]
        pending: int | str = "?"
        try:
            # It cannot write any more: settle what it had pending, and
            # give back its places under the limits (its successor's start
            # gives them back too, should this fail).
            pending = self.shared.bury(worker.slot)
        except Exception:
            log.failure(
                "worker {slot} (pid {pid}) ended; its slot could not be settled",
                slot=worker.slot,
                pid=worker.pid,
            )
        how = _how(reason)
        if self.stopping:
            if how != "exited" or pending:
                log.warn(
                    "worker {slot} (pid {pid}) {how} with {pending} requests pending",
                    slot=worker.slot,
                    pid=worker.pid,
                    how=how,
                    pending=pending,
                )
            return
        if not current:
            return
        log.warn(
            "worker {slot} (pid {pid}) {how} with {pending} requests pending; "
            "starting it again",
            slot=worker.slot,
            pid=worker.pid,
            how=how,
            pending=pending,
        )
        young = self.clock.seconds() - worker.started < RESTART_PAUSE
        self.clock.callLater(RESTART_PAUSE if young else 0, self._respawn, worker.slot)

    def _respawn(self, slot: int) -> None:
        if self.stopping or slot in self.workers:
            return
        try:
            self._spawn(slot)
        except Exception:
            log.failure("worker {slot} could not be started; trying again", slot=slot)
            self.clock.callLater(RESTART_PAUSE, self._respawn, slot)

    def stopService(self) -> Deferred[Any]:
        super().stopService()  # type: ignore[no-untyped-call]
        self.stopping = True
        if self._checker.running:
            self._checker.stop()
        quiet_repeated_stops(self.reactor)
        for listener in self.listeners:
            listener.socket.close()
        ended = [w.ended for w in self.workers.values()]
        for worker in self.workers.values():
            # Not SIGTERM: a worker not yet running would die of it; the
            # word waits in the pipe until the worker reads it.
            _tell_stop(worker, self.word)
        timeout = self.clock.callLater(self.stop_timeout, self._kill)
        done = DeferredList(ended)

        def finished(result: object) -> None:
            if timeout.active():
                timeout.cancel()
            totals = self.shared.totals().snapshot()
            log.info("all workers stopped; totals {totals}", totals=totals)
            self.shared.close()

        return done.addCallback(finished)

    def serving(self) -> bool:
        """
        Whether every worker runs and has beaten once: the generation serves.
        """
        return len(self.workers) == self.count and all(
            self.shared.last_beat(w.slot) for w in self.workers.values()
        )

    def listening(self) -> list[int]:
        """
        The descriptors of the listening sockets, in C{--listen} order.
        """
        return [listener.socket.fileno() for listener in self.listeners]

    def _kill(self) -> None:
        for worker in self.workers.values():
            log.warn("worker {slot} did not stop; killing it", slot=worker.slot)
            _signal(worker, signal.SIGKILL)


def _tell_stop(worker: _Worker, word: bytes = STOP) -> None:
    try:
        cast(IProcessTransport, worker.transport).write(word)
    except Exception:
        pass  # it has already gone


def _signal(worker: _Worker, number: int) -> None:
    transport = cast(IProcessTransport, worker.transport)
    try:
        transport.signalProcess(number)
    except Exception:
        pass  # it has already gone


def _how(reason: Failure) -> str:
    if reason.check(ProcessDone):
        return "exited"
    signal_number = getattr(reason.value, "signal", None)
    if signal_number:
        try:
            name = signal.Signals(signal_number).name
        except ValueError:
            name = f"signal {signal_number}"
        return f"was killed by {name}"
    return f"exited with status {getattr(reason.value, 'exitCode', '?')}"
