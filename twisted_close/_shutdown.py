"""
Whether the reactor's shutdown has begun, so that a request its shutdown
cuts is reported as the server's doing (L{Ending.SHUTDOWN}), never as the
client's, even without a L{GracefulDrain}.

Nothing happens at import: a reactor is watched from the first request
watched on it (L{watch_shutdown}), by a C{'before' 'shutdown'} system event
trigger.  A C{Clock}, or anything else that is not an C{IReactorCore}, is
never shutting down.
"""

from __future__ import annotations

from weakref import ref

from twisted.internet.interfaces import IReactorCore

from ._clock import PerClock
from ._twisted.reactor import reactor_cutting_connections

__all__ = ["ShutdownWatch", "watch_shutdown"]


class ShutdownWatch:
    """
    What one reactor's shutdown has done so far.

    @ivar begun: whether its C{'before' 'shutdown'} triggers have run.
    """

    __slots__ = ("_reactor", "begun")

    def __init__(self, reactor: IReactorCore | None) -> None:
        # Weakly: the reactor holds this watch (its trigger), and a strong
        # reference back would keep a test's fake reactor in _watches forever.
        self._reactor = None if reactor is None else ref(reactor)
        self.begun = False
        if reactor is not None:
            reactor.addSystemEventTrigger("before", "shutdown", self._begin)

    def _begin(self) -> None:
        self.begun = True

    @property
    def cutting_connections(self) -> bool:
        """
        Whether the reactor is dropping every connection as it stops: a
        connection lost now was lost to the shutdown, whoever seemed to
        close it.  (A graceful drain's grace, in the C{'before'} phase,
        is not: clients may still leave by themselves then.)
        """
        if not self.begun or self._reactor is None:
            return False
        reactor = self._reactor()
        return reactor is not None and reactor_cutting_connections(reactor)


_NEVER = ShutdownWatch(None)


def _watch_of(clock: object) -> ShutdownWatch:
    # A Clock, or anything else that is not a reactor, never shuts down.
    return ShutdownWatch(clock) if IReactorCore.providedBy(clock) else _NEVER


watch_shutdown: PerClock[ShutdownWatch] = PerClock(_watch_of)
"""
The L{ShutdownWatch} of a clock, made (and its trigger added) the first
time it is asked for a reactor.
"""
