"""
A graceful stop: refuse new work, let pending answers finish within a
grace period, end the rest with C{503}, and let those answers reach their
clients before the reactor drops the connections.
"""

from __future__ import annotations

from twisted.application.service import Service
from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from ._ledger import Ledger
from ._outcome import Ending

__all__ = ["GracefulDrain"]

log = Logger(namespace="twisted_close")

SUMMARY_FORMAT = (
    "Shutdown drain: {completed} answered normally, {unavailable} answered 503, "
    "{streams} event streams ended, {interrupted} interrupted by clients, "
    "in {elapsed:.2f} s"
)


def _open(transport: object) -> bool:
    return bool(getattr(transport, "connected", False)) and not getattr(
        transport, "disconnected", False
    )


class GracefulDrain(Service):
    """
    Add it to your application's C{MultiService} before the listening
    services: services stop in reverse order, so the ports have stopped
    accepting when the drain begins.

    On stop, the ledger refuses new work (C{503} with C{Retry-After}); event
    streams are ended at once, since they have no answer to wait for;
    pending answers get up to C{grace} seconds; then every request still
    pending is answered C{503} with C{Retry-After} and C{Connection: close}.
    The stop waits until those answers are out (up to C{flush_timeout}
    seconds) and logs one summary line.
    """

    name = "graceful-drain"

    def __init__(
        self,
        ledger: Ledger,
        clock: IReactorTime,
        grace: float = 5.0,
        *,
        flush_timeout: float = 2.0,
        poll: float = 0.02,
        retry_after: int = 5,
    ) -> None:
        self.ledger = ledger
        self.clock = clock
        self.grace = grace
        self.flush_timeout = flush_timeout
        self.poll = poll
        self.retry_after = retry_after

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        return Deferred.fromCoroutine(self.drain())

    async def drain(self) -> None:
        """
        Drain the ledger as described above; usable without a service, too.
        """
        ledger, clock = self.ledger, self.clock
        started = clock.seconds()
        completed, interrupted = ledger.completed, ledger.interrupted
        shutdown = ledger.server_endings[Ending.SHUTDOWN]
        ledger.limits.close()
        # Every connection with a request in hand is closed once its answer
        # is out, so that "out" can be seen: a closed connection.
        transports = []
        for pending in ledger.live():
            pending.close_when_done()
            transports.append(getattr(pending, "transport", None))
        streams = 0
        for pending in ledger.live():
            if pending.endless:
                streams += 1
                pending.end_by_server(Ending.SHUTDOWN, self.retry_after)
        if ledger.pending:
            idle = ledger.when_idle()
            idle.addTimeout(self.grace, clock)
            try:
                await idle
            except TimeoutError:
                for pending in ledger.live():
                    pending.end_by_server(Ending.SHUTDOWN, self.retry_after)
        # The reactor drops open connections at shutdown without flushing:
        # wait until what we wrote has gone out and they are closed.
        deadline = clock.seconds() + self.flush_timeout
        while any(_open(t) for t in transports) and clock.seconds() < deadline:
            await deferLater(clock, self.poll)
        # Lines held back by the rate limit would be lost with the process.
        ledger.flush_log()
        log.info(
            SUMMARY_FORMAT,
            completed=ledger.completed - completed,
            unavailable=ledger.server_endings[Ending.SHUTDOWN] - shutdown - streams,
            streams=streams,
            interrupted=ledger.interrupted - interrupted,
            elapsed=clock.seconds() - started,
            still_pending=ledger.pending,
        )
