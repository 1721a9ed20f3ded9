"""
Whether an answer reached its client: an answer is completed when the
client's TCP acknowledged its last byte, not when C{finish()} handed it to
Twisted.

At the end of each answer its watch notes the byte offset of its last
byte on the connection (L{twisted_close._twisted.tcp.written_offset}); the
answer is delivered once C{tcpi_bytes_acked} reaches it.  Answers not yet
acknowledged are looked at again on one timer shared by all of them.  If
the connection ends first, what its kernel had acknowledged by then
decides; a connection the server closes cleanly is watched on a duplicate
of its socket, which the kernel keeps open for the acknowledgements still
to come, for at most L{LINGER} seconds.

An acknowledgement comes from the client's kernel, not its application: it
proves the bytes reached the host (or a TLS-terminating proxy), not that
anyone read them.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from ._clock import PerClock
from ._linux import TCP_CLOSE, bytes_acked, tcp_state
from ._twisted.tcp import delivery_point, on_tcp_lost

__all__ = ["LINGER", "POLL", "Acknowledging", "Delivering", "deliveries"]

POLL = 0.05
"""Seconds between two looks at the answers not yet acknowledged."""

LINGER = 60.0
"""
Seconds a connection the server closed is still watched for the
acknowledgement of its last answers (bounded sooner by the kernel: a
peer timeout, a reset).
"""


class Delivering(Protocol):
    """
    An answer handed over, waiting for its acknowledgement (a watch).
    """

    def delivered(self) -> None:
        """
        Its last byte was acknowledged.
        """

    def undelivered(self, unacknowledged: int) -> None:
        """
        Its connection ended with C{unacknowledged} of its bytes not
        acknowledged.
        """


class Acknowledging(Protocol):
    """
    A transport that says itself what was written and acknowledged (as
    L{twisted_close.testing}'s in memory do); others are read through
    their TCP socket.
    """

    def written_offset(self) -> int | None:
        """
        The offset just past the last byte written so far.
        """

    def acknowledged(self) -> int | None:
        """
        How many bytes were acknowledged so far.
        """

    def when_lost(self, lost: Callable[[int | None, bool], None]) -> None:
        """
        Call C{lost} once the connection ends, with what was acknowledged
        then and whether more may still be (a clean close).
        """


def _acknowledging(transport: object) -> Acknowledging | None:
    # The testing transports, and anything else that says so itself.
    if callable(getattr(transport, "when_lost", None)):
        return transport  # type: ignore[return-value]
    return None


class _Closing:
    """
    A connection the server closed cleanly, watched on a duplicate of its
    socket for the acknowledgements still to come.
    """

    __slots__ = ("answers", "sock", "until")

    def __init__(
        self, sock: socket.socket, answers: list[tuple[Delivering, int]], until: float
    ) -> None:
        self.sock = sock
        self.answers = answers
        self.until = until


class Deliveries:
    """
    Every answer of one clock's server waiting for its acknowledgement.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        # TCP transport (or Acknowledging one) -> its answers and offsets;
        # kept, empty, until the connection ends: its loss is hooked once.
        self._waiting: dict[Any, list[tuple[Delivering, int]]] = {}
        self._closing: list[_Closing] = []
        self._call: IDelayedCall | None = None

    def __len__(self) -> int:
        """
        How many answers wait for their acknowledgement.
        """
        return sum(map(len, self._waiting.values())) + sum(
            len(c.answers) for c in self._closing
        )

    def track(self, answer: Delivering, transport: object) -> bool:
        """
        Wait for the acknowledgement of everything written to C{transport}
        so far, the end of C{answer}; say whether it can be known (if not,
        nothing is waited for).
        """
        own = _acknowledging(transport)
        if own is not None:
            key: Any = own
            target, acked = own.written_offset(), own.acknowledged()
        else:
            point = delivery_point(transport)
            if point is None:
                return False
            key, acked, target = point
        if target is None:
            return False
        answers = self._waiting.get(key)
        if answers and acked is not None:
            # A client's next request carries its acknowledgement of the
            # answers before: settle those now rather than at the next look.
            answers[:] = _settle(answers, acked)
        if answers is None:
            answers = self._waiting[key] = []
            if own is not None:
                own.when_lost(lambda acked, clean: self._lost(key, acked, None, clean))
            else:
                on_tcp_lost(transport, self._tcp_lost)
        answers.append((answer, target))
        if self._call is None:
            # One timer for every answer waiting, not one per answer: a
            # delayed call made and fired per request would cost more than
            # the rest of the request's bookkeeping.
            self._call = self._clock.callLater(POLL, self._look)
        return True

    def _look(self) -> None:
        self._call = None
        waiting = False
        for key, answers in self._waiting.items():
            if not answers:
                continue
            own = _acknowledging(key)
            acked = own.acknowledged() if own is not None else _tcp_acked(key)
            if acked is not None:  # None: ending, and its loss will tell
                answers[:] = _settle(answers, acked)
            waiting = waiting or bool(answers)
        now = self._clock.seconds()
        for closing in list(self._closing):
            acked = bytes_acked(closing.sock)
            closing.answers = _settle(closing.answers, acked or 0)
            gone = acked is None or tcp_state(closing.sock) == TCP_CLOSE
            if closing.answers and (gone or now >= closing.until):
                _fail(closing.answers, acked or 0)
                closing.answers = []
            if not closing.answers:
                closing.sock.close()
                self._closing.remove(closing)
        if waiting or self._closing:
            self._call = self._clock.callLater(POLL, self._look)

    def _tcp_lost(self, transport: Any, sock: socket.socket, reason: Failure) -> None:
        clean = isinstance(reason.value, ConnectionDone)
        self._lost(transport, bytes_acked(sock), sock, clean)

    def _lost(
        self, key: Any, acked: int | None, sock: socket.socket | None, clean: bool
    ) -> None:
        answers = self._waiting.pop(key, None)
        if not answers:
            return
        left = _settle(answers, acked or 0)
        if not left:
            return
        if clean and sock is not None:
            # The socket is shut down and closed right after: a duplicate
            # keeps it for the acknowledgements still on their way.
            until = self._clock.seconds() + LINGER
            self._closing.append(_Closing(sock.dup(), left, until))
            if self._call is None:
                self._call = self._clock.callLater(POLL, self._look)
            return
        _fail(left, acked or 0)


def _tcp_acked(transport: Any) -> int | None:
    sock = getattr(transport, "socket", None)
    return bytes_acked(sock) if isinstance(sock, socket.socket) else None


def _settle(
    answers: list[tuple[Delivering, int]], acked: int
) -> list[tuple[Delivering, int]]:
    left = []
    for answer, target in answers:
        if acked >= target:
            answer.delivered()
        else:
            left.append((answer, target))
    return left


def _fail(answers: list[tuple[Delivering, int]], acked: int) -> None:
    for answer, target in answers:
        answer.undelivered(target - acked)


deliveries: PerClock[Deliveries] = PerClock(Deliveries)
"""The L{Deliveries} of a clock, made the first time it is asked for."""
