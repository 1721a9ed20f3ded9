"""
The values that say how a request ended: L{Ending}, L{Rejection}, the
L{Outcome} record, and L{Pending}, what the ledger holds while a request
is open.  Plain values: this module imports nothing else of ours.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["PHASES", "Ending", "Outcome", "Pending", "Rejection"]

PHASES = ("waiting", "answering", "delivering")
"""Where an answer can be when its request ends, in order (L{Outcome.phase})."""


class Ending(enum.Enum):
    """
    How a request ended.  The value is the reason in words a user understands.
    """

    # By identity, in C: Enum hashes the name in Python, a call per lookup of
    # the counters keyed by these (several per interruption).
    __hash__ = object.__hash__

    COMPLETED = "completed"
    CLIENT_CLOSED = "client closed the connection"
    CLIENT_RESET = "connection reset by the client"
    CLIENT_LOST = "connection lost"
    STREAM_RESET = "client reset the stream"
    ALREADY_GONE = "client had already gone"
    SERVER_ABORTED = "connection aborted by the server"
    SERVER_CLOSED = "connection closed by the server"
    SHUTDOWN = "server shutting down"
    STALLED = "dropped: the client read nothing"
    WORKER_DIED = "worker died"
    CLIENT_CLOSED_NO_TLS_CLOSE = "client closed without TLS close_notify"
    CLIENT_HALF_CLOSED = "client half-closed"
    CLIENT_STOPPED_READING = "client stopped reading"
    PEER_TIMED_OUT = "peer stopped responding"
    ANSWER_NOT_ACKNOWLEDGED = "answer not acknowledged"

    @property
    def interrupted(self) -> bool:
        """
        Whether this ending cut the request short, by either side.
        """
        return self is not Ending.COMPLETED

    @property
    def by_server(self) -> bool:
        """
        Whether the server, not the client, cut the request short.
        """
        return self in _BY_SERVER

    @property
    def code(self) -> str:
        """
        A short name for labels and JSON, e.g. C{"client_closed"}.
        """
        return str(self.name).lower()


_BY_SERVER = (
    Ending.SERVER_ABORTED,
    Ending.SERVER_CLOSED,
    Ending.SHUTDOWN,
    Ending.STALLED,
    # A worker process that died took its pending requests with it.
    Ending.WORKER_DIED,
)


class Rejection(enum.Enum):
    """
    Why a request was refused before it took on any work.  The value is the
    reason in words, e.g. C{"overloaded"}.
    """

    # By identity, in C: Enum hashes the name in Python, a call per lookup of
    # the counters keyed by these (several per interruption).
    __hash__ = object.__hash__

    BAD_REQUEST = "bad request"
    OVERLOADED = "overloaded"
    SHUTTING_DOWN = "shutting down"
    TOO_MANY_STREAMS = "too many streams"
    CLIENT_STREAMS = "too many streams from this client"
    CLIENT_PENDING = "too many pending requests from this client"
    READ_TIMEOUT = "request too slow to arrive"
    BODY_TOO_LARGE = "request body too large"

    @property
    def code(self) -> str:
        """
        A short name for labels and JSON, e.g. C{"shutting_down"}.
        """
        return str(self.name).lower()


@dataclass(frozen=True, slots=True)
class Outcome:
    """
    One record per request that held pending work: who, what, how it ended.

    @ivar method: the HTTP method, e.g. C{"GET"}, as it came.
    @ivar path: the request path as it came (bytes that are not UTF-8 as
        C{\\xNN}); log lines escape it (see L{twisted_close._text}).
    @ivar client: C{host:port} of the peer (C{[host]:port} for IPv6).
    @ivar elapsed: seconds from when the work was registered to the end.
    @ivar ending: how it ended.
    @ivar cancelled: how many pending items were cancelled because of it.
    @ivar detail: more words about the end, e.g. C{"3 events sent"}.
    @ivar phase: where the answer was when it ended: C{"waiting"} (no byte
        of it sent), C{"answering"} (its head or part of its body sent), or
        C{"delivering"} (all of it handed over: then completed once the
        client's TCP acknowledged it, or C{answer not acknowledged}).
    @ivar delivery: for an answer handed over in full, how its delivery is
        known: C{"acknowledged"} (the client's TCP acknowledged its last
        byte), C{"unknown"} (no C{TCP_INFO} to ask: not Linux, a UNIX
        socket, a transport in memory), or C{"written"} (not asked, as
        configured); C{""} for an answer cut short before.
    @ivar unacknowledged: bytes of the answer its client's TCP never
        acknowledged (with C{answer not acknowledged}).
    """

    method: str
    path: str
    client: str
    elapsed: float
    ending: Ending
    cancelled: int = 0
    detail: str = ""
    phase: str = ""
    delivery: str = ""
    unacknowledged: int = 0

    @property
    def reason(self) -> str:
        """
        The ending in words, e.g. C{"client closed the connection"}.
        """
        return str(self.ending.value)

    def as_dict(self) -> dict[str, Any]:
        """
        The record as JSON-ready values, the ending by its code.
        """
        # By hand: dataclasses.asdict deep-copies, ten times slower, and the
        # demo page's stream asks for every outcome.
        ending = self.ending
        return {
            "method": self.method,
            "path": self.path,
            "client": self.client,
            "elapsed": self.elapsed,
            "ending": ending.code,
            "reason": str(ending.value),
            "cancelled": self.cancelled,
            "detail": self.detail,
            "phase": self.phase,
            "delivery": self.delivery,
            "unacknowledged": self.unacknowledged,
        }


class Pending(Protocol):
    """
    What the ledger holds for a pending request: something the server can
    end (see L{twisted_close.RequestWatch.end_by_server}).
    """

    endless: bool

    @property
    def outcome(self) -> Outcome | None: ...

    @property
    def phase(self) -> str: ...

    def end_by_server(self, ending: Ending, retry_after: int = ...) -> None: ...

    def close_when_done(self) -> None: ...
