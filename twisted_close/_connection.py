"""
What is watched of one HTTP/1.x connection beyond its requests: how the TCP
connection under its TLS layer ended, whether its client half-closed, and,
while Twisted is not reading it, whether its client is still there.

One L{ConnectionWatch} is made for a connection when its first watched
request begins.  It stands in for what the channel pauses and resumes to
stop and start reading (its transport), so that it hears of both, costs
the channel no new attribute, and is found from the channel in one lookup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from twisted.internet.interfaces import IDelayedCall

from ._endings import PeerSign, peer_ending
from ._linux import TCP_CLOSE, TCP_CLOSE_WAIT, tcp_state
from ._outcome import Ending
from ._policy import HalfClose
from ._twisted.channel import (
    NETWORK_PRODUCER,
    abort_transport,
    lose_connection,
    on_half_close,
    replace_network_producer,
    request_in_hand,
    stop_after_answer,
)
from ._twisted.request import transport_of
from ._twisted.tcp import tcp_socket
from ._twisted.tls import keep_tls_tcp_reason

if TYPE_CHECKING:
    from ._delivery import Connection
    from ._watch import RequestWatch

__all__ = ["POLL_INTERVAL", "ConnectionWatch", "HalfClose"]

POLL_INTERVAL = 1.0
"""Seconds between looks at the TCP state of a connection not being read."""

# What the kernel's TCP state says of the client (TCP_INFO).
_SIGNS = {TCP_CLOSE: PeerSign.TCP_RESET, TCP_CLOSE_WAIT: PeerSign.TCP_FIN}


class ConnectionWatch:
    """
    The client's presence on one HTTP/1.x connection.

    @ivar watch: the latest request watched on the connection: the one in
        hand, since HTTP/1.x answers one request at a time.
    """

    __slots__ = (
        "_channel",
        "_half_closed",
        "_paused",
        "_poll",
        "_producer",
        "delivering",
        "watch",
    )

    # A class attribute, not a slot: one per connection is 16 bytes more.
    answers_half_close = False
    """Whether a half-close is answered (C{--half-close answer})."""

    def __init__(self, channel: object, producer: Any) -> None:
        self._channel = channel
        self._producer = producer
        self._half_closed = False
        self._paused = False
        self._poll: IDelayedCall | None = None
        self.watch: RequestWatch | None = None
        # Its answers waiting for their acknowledgement (made by the first),
        # or False where that cannot be known (not TCP).
        self.delivering: Connection | Literal[False] | None = None

    @classmethod
    def of(cls, channel: object, half_close: HalfClose) -> ConnectionWatch | None:
        """
        The watch of C{channel}'s connection, made on first asking; C{None}
        for an HTTP/2 stream (its connection is shared).
        """
        # network_producer(), read here without the call: once per request.
        producer = getattr(channel, NETWORK_PRODUCER, None)
        if isinstance(producer, ConnectionWatch):
            return producer
        if producer is None:
            return None
        kind = _AnsweringHalfClose if half_close == "answer" else ConnectionWatch
        state = kind(channel, producer)
        replace_network_producer(channel, state)
        transport = getattr(channel, "transport", None)
        keep_tls_tcp_reason(transport)
        if state.answers_half_close:
            on_half_close(channel, state._client_half_closed)
        return state

    # The channel's producer, passed on: IPushProducer, and what
    # HTTPChannel asks of its transport as a consumer of its own.

    def pauseProducing(self) -> None:
        self._producer.pauseProducing()
        self._paused = True
        self._schedule()

    def resumeProducing(self) -> None:
        self._producer.resumeProducing()
        # Called as every request is done: cheap unless it was paused.
        if self._paused:
            self._resumed()

    def stopProducing(self) -> None:
        self._producer.stopProducing()

    def registerProducer(self, producer: object, streaming: bool) -> None:
        self._producer.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self._producer.unregisterProducer()

    def __getattr__(self, name: str) -> Any:
        # Anything else asked of the transport through here.
        return getattr(self._producer, name)

    @property
    def polling(self) -> bool:
        """
        Whether the connection's TCP state is being looked at.
        """
        return self._poll is not None

    def _resumed(self) -> None:
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
            half_closed = peer_ending(PeerSign.HALF_CLOSED)
            assert half_closed is not None
            watch.peer_left(half_closed)
        stop_after_answer(channel)
        # Nothing is read any more: only the TCP state can tell a reset.
        self._schedule()

    def _schedule(self) -> None:
        # The clock of the requests watched: the reactor, or a test's Clock.
        watch = self.watch
        if self._poll is None and watch is not None:
            self._poll = watch.clock.callLater(POLL_INTERVAL, self._tick)

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
        sign = _SIGNS.get(state)
        if sign is None:
            return True
        ending = peer_ending(sign, self.answers_half_close)
        if ending is None:
            # Only a half-close, and the answer is still wanted.
            return True
        self._client_gone(ending)
        return False

    def lost(self) -> None:
        """
        The connection ended (told by the request in hand, or by its
        deliveries, before its channel hears of it): nothing more to watch.
        Let go of the channel and the request's watch, which hold this in
        turn: the connection is then freed at once, not left to the cyclic
        GC.
        """
        self._unschedule()
        self._paused = self._half_closed = False
        self._channel = None
        self.watch = None

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


class _AnsweringHalfClose(ConnectionWatch):
    """
    A L{ConnectionWatch} whose client's half-close is answered, not taken
    for leaving.
    """

    __slots__ = ()
    answers_half_close = True
