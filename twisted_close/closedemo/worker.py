"""
One worker process of C{twistd closedemo --workers N}: it serves the
listening sockets its parent opened and shares with every worker, counts
into its slot of the shared counters, and drains like a single process
does when its parent says C{stop} on its stdin, or on SIGTERM.

Started by L{twisted_close.closedemo.workers.WorkerPool} as
C{python -m twisted_close.closedemo.worker CONFIG}, C{CONFIG} being JSON.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any, cast

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.error import ReactorNotRunning
from twisted.internet.interfaces import IListeningPort, IReactorCore, IReactorSocket
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.stdio import StandardIO
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver
from twisted.python.failure import Failure

from .. import GracefulDrain, Ledger, Limits
from ..guard import guard_of
from ..reactors import accept_few
from .descriptors import connection_room
from .restart import SETTLE
from .shared import SharedCounters
from .signals import quiet_repeated_stops
from .site import build_site, optional_metrics
from .workers import HANDOVER, STOP

log = Logger(namespace="twisted_close")

BEAT_EVERY = 0.25
"""Seconds between two heartbeats in the shared memory (see L{WorkerPool})."""

PUBLISH_EVERY = 0.01
"""Seconds between two looks at this worker's counters, published if changed."""

ACCEPTS = 1
"""
Connections a worker accepts each time the shared listening socket is
ready: the kernel wakes every worker for a new connection, and a worker
that took a hundred at once left the others idle (one held 45 of 50).
"""


def serve(config: dict[str, Any]) -> None:
    """
    Serve until told to stop, as C{config} says (see L{WorkerPool}).
    """
    from twisted.internet import reactor

    settings = config["settings"]
    slot = config["slot"]
    shared = SharedCounters.adopt(config["shared_fd"], config["slots"])
    # The caps hold for the whole server: counted in the shared memory.
    limits = Limits(**settings["limits"], counts=shared.limits(slot))
    ledger = Ledger(reactor, limits=limits)
    previous = shared.read(slot)
    if previous is not None:
        # Carry on from the worker this one replaces: totals never go back.
        ledger.restore(previous)

    last: list[tuple[int, ...]] = []

    def publish() -> None:
        seen = (
            ledger.pending,
            ledger.completed,
            ledger.interrupted,
            ledger.server_ended,
            ledger.rejected,
        )
        if last == [seen]:
            return
        last[:] = [seen]
        shared.publish(slot, {**ledger.state(), "worker": slot, "pid": os.getpid()})

    def beat() -> None:
        shared.beat(slot, time.monotonic_ns())

    beater = LoopingCall(beat)
    beater.clock = reactor
    beater.start(BEAT_EVERY)
    publisher = LoopingCall(publish)
    publisher.clock = reactor
    publisher.start(PUBLISH_EVERY)
    site = build_site(
        clock=reactor,
        ledger=ledger,
        metrics=optional_metrics(shared),
        counts=shared,
        **settings["site"],
    )
    ports: list[IListeningPort] = []
    sockets = cast(IReactorSocket, reactor)
    guard = guard_of(site)
    for fd, family in config["listen"]:
        # The parent's one listening socket, shared by every worker.
        ports.append(sockets.adoptStreamPort(fd, family, site))  # type: ignore[arg-type]
        os.close(fd)  # adoptStreamPort took a copy
        accept_few(ports[-1], ACCEPTS)
        if guard is not None:
            guard.watch_port(ports[-1])
    if guard is not None:
        # The parent lifted the limit and said what it holds.
        guard.room = connection_room()
    drain = GracefulDrain(ledger, reactor, settings["shutdown_grace"])
    core = cast(IReactorCore, reactor)
    # Our stdin is a pipe from the parent: its end means the parent is gone
    # (even by SIGKILL), and a worker without a parent stops too.
    parent = _Parent(core)
    StandardIO(parent, reactor=reactor)

    async def stop() -> None:
        # Our own stop ends stdin too: that is not the parent going.
        parent.stopping = True
        quiet_repeated_stops(reactor)
        for port in ports:
            await maybeDeferred(port.stopListening)
        if parent.handover:
            # The next generation serves: a request on a connection taken
            # just before is still answered, not refused as shutting down.
            await deferLater(reactor, SETTLE, lambda: None)
        await drain.drain()
        publisher.stop()
        publish()

    core.addSystemEventTrigger(
        "before", "shutdown", lambda: Deferred.fromCoroutine(stop())
    )
    # A Ctrl-C reaches the whole process group: the parent decides, and
    # stops its workers.
    core.callWhenRunning(signal.signal, signal.SIGINT, signal.SIG_IGN)
    # Said once running: from then on a SIGTERM stops it gracefully too.
    core.callWhenRunning(
        log.info,
        "worker {slot} (pid {pid}) serving on {reactor}",
        slot=slot,
        pid=os.getpid(),
        reactor=type(reactor).__name__,
    )
    core.run()


class _Parent(Protocol):
    """
    The parent's end of our stdin: C{stop} on it begins a normal stop, and
    its end without one means the parent has gone.
    """

    def __init__(self, reactor: IReactorCore) -> None:
        self.reactor = reactor
        self.stopping = False
        self.handover = False
        self._heard = b""

    def dataReceived(self, data: bytes) -> None:
        self._heard = (self._heard + data)[-len(STOP) :]
        if self._heard in (STOP, HANDOVER) and not self.stopping:
            self.stopping = True
            self.handover = self._heard == HANDOVER
            try:
                self.reactor.stop()
            except ReactorNotRunning:
                pass  # already stopping

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.stopping:
            return
        log.warn("the parent process has gone; stopping")
        try:
            self.reactor.stop()
        except ReactorNotRunning:
            pass  # already stopping


def main(argv: list[str]) -> None:
    # A restart is the parent's to make (SIGHUP to the process group must
    # not end a worker, whose default it would be).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    globalLogBeginner.beginLoggingTo(
        [textFileLogObserver(sys.stdout)], redirectStandardIO=False
    )
    config = json.loads(argv[1])
    if config.get("reactor") == "asyncio":
        # The parent runs on twistd -r asyncio: so does every worker.
        from twisted.internet import asyncioreactor

        asyncioreactor.install()
    serve(config)


if __name__ == "__main__":
    main(sys.argv)
