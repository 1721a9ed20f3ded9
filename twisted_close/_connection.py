"""
What is watched of one HTTP/1.x connection beyond its requests: how the TCP
connection under its TLS layer ended, whether its client half-closed, and,
while Twisted is not reading it, whether its client is still there.

One L{ConnectionWatch} is made for a connection when its first watched
request begins; nothing here runs per request but a lookup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from ._outcome import Ending
from ._policy import HalfClose
from ._twistedweb import (
    TCP_CLOSE,
    TCP_CLOSE_WAIT,
    abort_transport,
    attach_state,
    connection_state,
    http1_channel,
    is_tls,
    lose_connection,
    on_half_close,
    record_tls_reason,
    request_in_hand,
    stop_after_answer,
    tap_reading,
    tcp_socket,
    tcp_state,
    transport_of,
)

if TYPE_CHECKING:
    from ._watch import RequestWatch

__all__ = ["POLL_INTERVAL", "ConnectionWatch", "HalfClose"]

POLL_INTERVAL = 1.0
"""Seconds between looks at the TCP state of a connection not being read."""

_GONE = {TCP_CLOSE: Ending.CLIENT_RESET, TCP_CLOSE_WAIT: Ending.CLIENT_CLOSED}


class ConnectionWatch:
    """
    The client's presence on one HTTP/1.x connection.

    @ivar watch: the latest request watched on the connection: the one in
        hand, since HTTP/1.x answers one request at a time.
    @ivar tcp_reason: over TLS, how TCP said the connection ended.
    @ivar tls: whether the connection is over Twisted's TLS layer.
    """

    __slots__ = (
        "_answer_half_closed",
        "_channel",
        "_clock",
        "_half_closed",
        "_paused",
        "_poll",
        "tcp_reason",
        "tls",
        "watch",
    )

    def __init__(self, channel: object, clock: IReactorTime, half_close: HalfClose):
        self._channel = channel
        self._clock = clock
        self._answer_half_closed = half_close == "answer"
        self._half_closed = False
        self._paused = False
        self._poll: IDelayedCall | None = None
        self.tcp_reason: Failure | None = None
        self.tls = False
        self.watch: RequestWatch | None = None

    @classmethod
    def of(
        cls, channel: object, clock: IReactorTime, half_close: HalfClose
    ) -> ConnectionWatch | None:
        """
        The watch of C{channel}'s connection, made on first asking; L{None}
        for an HTTP/2 stream (its connection is shared).
        """
        state: ConnectionWatch | None = connection_state(channel)
        if state is None:
            if not http1_channel(channel):
                return None
            state = cls(channel, clock, half_close)
            attach_state(channel, state)
            transport = getattr(channel, "transport", None)
            state.tls = is_tls(transport)
            record_tls_reason(transport, state._tls_lost)
            tap_reading(channel, state._stopped_reading, state._resumed_reading)
            if state._answer_half_closed:
                on_half_close(channel, state._client_half_closed)
        return state

    @property
    def polling(self) -> bool:
        """
        Whether the connection's TCP state is being looked at.
        """
        return self._poll is not None

    def _tls_lost(self, reason: Failure) -> None:
        self.tcp_reason = reason

    def _stopped_reading(self) -> None:
        self._paused = True
        self._schedule()

    def _resumed_reading(self) -> None:
        # Called as every request is done: cheap unless it was paused.
        if not self._paused:
            return
        self._paused = False
        if not self._half_closed:
            self._unschedule()
        # The request in hand has just finished, and Twisted is about to
        # parse the next one from its buffer: a last look first, so that a
        # client gone in the last second gets neither answer.
        self._look()

    def _client_half_closed(self) -> None:
        self._half_closed = True
        channel = self._channel
        if not request_in_hand(channel):
            lose_connection(channel)
            return
        watch = self.watch
        if watch is not None:
            watch.peer_left(Ending.CLIENT_HALF_CLOSED)
        stop_after_answer(channel)
        # Nothing is read any more: only the TCP state can tell a reset.
        self._schedule()

    def _schedule(self) -> None:
        if self._poll is None:
            self._poll = self._clock.callLater(POLL_INTERVAL, self._tick)

    def _unschedule(self) -> None:
        if self._poll is not None:
            if self._poll.active():
                self._poll.cancel()
            self._poll = None

    def _tick(self) -> None:
        self._poll = None
        if not (self._paused or self._half_closed):
            return
        if self._look():
            self._schedule()

    def _look(self) -> bool:
        """
        Look at the TCP state; end the connection if its client is gone.
        Say whether it is worth looking again.
        """
        sock = tcp_socket(transport_of(self._channel))
        state = None if sock is None else tcp_state(sock)
        if state is None:
            return False
        ending = _GONE.get(state)
        if ending is Ending.CLIENT_CLOSED and self._answer_half_closed:
            # Only a half-close: the answer is still wanted.
            return True
        if ending is None:
            return True
        self._client_gone(ending)
        return False

    def _client_gone(self, ending: Ending) -> None:
        channel = self._channel
        self._paused = self._half_closed = False
        self._unschedule()
        watch = self.watch
        if watch is not None:
            # The request in hand, or, from requestDone, the one just
            # finished; a watch that has ended ignores it.
            watch.peer_left(ending)
        # Nothing more is parsed, and what was written is never sent.
        stop_after_answer(channel)
        abort_transport(channel)
