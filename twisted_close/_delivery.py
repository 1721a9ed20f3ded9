"""
Whether an answer reached its client: an answer is completed when the
client's TCP acknowledged its last byte, not when C{finish()} handed it to
Twisted.

At the end of each answer its watch notes the byte offset of its last
byte on the connection (L{twisted_close._twisted.tcp.ConnectionBytes}); the
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
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._clock import PerClock
from ._linux import TCP_CLOSE, bytes_acked, tcp_state
from ._twisted.tcp import connection_bytes, on_tcp_lost

__all__ = [
    "LINGER",
    "POLL",
    "Acknowledging",
    "Connection",
    "Delivering",
    "deliveries",
]

log = Logger(namespace="twisted_close")

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


class _Watching(Protocol):
    def lost(self) -> None: ...


class _Bytes(Protocol):
    def written(self) -> int | None: ...

    def handed(self) -> int | None: ...

    def acked(self) -> int | None: ...


class _OwnBytes:
    """
    The bytes of an L{Acknowledging} transport, as a TCP connection's.
    """

    __slots__ = ("_own",)

    def __init__(self, own: Acknowledging) -> None:
        self._own = own

    def written(self) -> int | None:
        return self._own.written_offset()

    def handed(self) -> int | None:
        # In memory, what is written is handed over at once.
        return self._own.written_offset()

    def acked(self) -> int | None:
        return self._own.acknowledged()


class Connection:
    """
    One connection's answers waiting for their acknowledgement, with their
    offsets; kept, maybe empty, until the connection ends, so that what is
    found of it once (its TCP socket, its loss hooked) serves every answer.
    """

    __slots__ = ("_owner", "answers", "bytes", "listed", "watch")

    def __init__(self, owner: Deliveries, found: _Bytes) -> None:
        self._owner = owner
        self.bytes = found
        self.answers: list[tuple[Delivering, int]] = []
        # Whether its owner looks at it on its next round.
        self.listed = False
        # What else watches the connection, told when it ends.
        self.watch: _Watching | None = None

    def track(self, answer: Delivering) -> bool:
        """
        Wait for the acknowledgement of everything written to the
        connection so far, the end of C{answer}; say whether it can be known
        (if not, nothing is waited for).
        """
        target = self.bytes.written()
        if target is None:
            return False
        # Settled as the connection's next request begins (settle()), or at
        # the next look: no system call here.
        if not self.listed:
            self._owner.waiting(self)
        self.answers.append((answer, target))
        return True

    def settle(self) -> None:
        """
        Settle the answers the client acknowledged by now.
        """
        answers = self.answers
        if answers:
            acked = self.bytes.acked()
            if acked is not None:  # None: ending, and its loss will tell
                if acked >= answers[-1][1]:
                    # Offsets only grow: the last acknowledged, all were.
                    for earlier, _ in answers:
                        earlier.delivered()
                    answers.clear()
                else:
                    answers[:] = _settle(answers, acked)


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
        # By the transport the answers were written to, until it ends.
        self._connections: dict[Any, Connection] = {}
        # Those that had answers waiting at the last look or since.
        self._waiting: set[Connection] = set()
        self._closing: list[_Closing] = []
        self._call: IDelayedCall | None = None
        # Called once this reactor turn's writes are done (after_writes()).
        self._after: list[Callable[[], None]] = []
        self._after_call: IDelayedCall | None = None

    def __len__(self) -> int:
        """
        How many answers wait for their acknowledgement.
        """
        return sum(len(c.answers) for c in self._connections.values()) + sum(
            len(c.answers) for c in self._closing
        )

    def track(self, answer: Delivering, transport: object) -> bool:
        """
        Wait for the acknowledgement of everything written to C{transport}
        so far, the end of C{answer}; say whether it can be known (if not,
        nothing is waited for).
        """
        connection = self.connection(transport)
        return connection is not None and connection.track(answer)

    def connection(self, transport: object) -> Connection | None:
        """
        The L{Connection} of C{transport}, made on first asking; C{None}
        where what it acknowledges cannot be known.
        """
        connection = self._connections.get(transport)
        if connection is None:
            connection = self._connect(transport)
        return connection

    def after_writes(self, call: Callable[[], None]) -> None:
        """
        Call C{call} on the next turn of the reactor: after the writes of
        this one, which come after its timers.  What a first answer finds of
        its connection waits there, so that answers due at once go out
        before their bookkeeping, not after all of it.
        """
        self._after.append(call)
        if self._after_call is None:
            self._after_call = self._clock.callLater(0, self._written)

    def _written(self) -> None:
        self._after_call = None
        calls, self._after = self._after, []
        for call in calls:
            try:
                call()
            except Exception:
                log.failure("Watching a delivery failed")

    def waiting(self, connection: Connection) -> None:
        """
        C{connection} has an answer waiting: look at it on the next round.
        """
        connection.listed = True
        self._waiting.add(connection)
        self._schedule()

    def _schedule(self) -> None:
        # One timer for every answer waiting, not one per answer: a delayed
        # call made and fired per request would cost more than the rest of
        # the request's bookkeeping.
        if self._call is None:
            self._call = self._clock.callLater(POLL, self._look)

    def _connect(self, transport: object) -> Connection | None:
        own = _acknowledging(transport)
        if own is not None:
            connection = self._connections[transport] = Connection(self, _OwnBytes(own))
            own.when_lost(lambda acked, ok: self._lost(transport, acked, None, ok))
            return connection
        found = connection_bytes(transport)
        if found is None:
            return None
        connection = self._connections[transport] = Connection(self, found)

        def tcp_lost(tcp: object, sock: socket.socket, reason: Failure) -> None:
            found.release()
            clean = isinstance(reason.value, ConnectionDone)
            self._lost(transport, bytes_acked(sock), sock, clean)

        on_tcp_lost(transport, tcp_lost)
        return connection

    def _look(self) -> None:
        self._call = None
        for connection in list(self._waiting):
            answers = connection.answers
            # Not asked while the first answer waiting is not all in the
            # kernel yet (a burst of answers still being written): it
            # cannot be acknowledged, and a system call each is wasted.
            if answers and (connection.bytes.handed() or 0) >= answers[0][1]:
                connection.settle()
            if not answers:
                self._waiting.discard(connection)
                connection.listed = False
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
        if self._waiting or self._closing:
            self._schedule()

    def _lost(
        self, key: Any, acked: int | None, sock: socket.socket | None, clean: bool
    ) -> None:
        connection = self._connections.pop(key, None)
        if connection is None:
            return
        watch, connection.watch = connection.watch, None
        if watch is not None:
            # Its HTTP/1.x channel and watch hold each other (and the watch
            # this): let go now, or a connection closed after its answers
            # is left, with its channel, transport and socket, to the
            # cyclic GC.
            watch.lost()
        self._waiting.discard(connection)
        connection.listed = False
        answers = connection.answers
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
            self._schedule()
            return
        _fail(left, acked or 0)


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
