"""
The ledger: the live set of pending requests and the outcome counters.

Stats, logs and (later) metrics, the demo page and graceful shutdown all read
this one place, so that no second bookkeeping can drift from it.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass

__all__ = ["Ending", "Ledger", "Outcome"]


class Ending(enum.Enum):
    """
    How a request ended.  The value is the reason in words a user understands.
    """

    COMPLETED = "completed"
    CLIENT_CLOSED = "client closed the connection"
    CLIENT_RESET = "connection reset by the client"
    CLIENT_LOST = "connection lost"
    SERVER_ABORTED = "connection aborted by the server"
    STREAM_RESET = "client reset the stream"
    ALREADY_GONE = "client had already gone"

    @property
    def interrupted(self) -> bool:
        """
        Whether this ending cut the request short before it was answered.
        """
        return self is not Ending.COMPLETED


@dataclass(frozen=True, slots=True)
class Outcome:
    """
    One record per request that held pending work: who, what, how it ended.

    @ivar method: the HTTP method, e.g. C{"GET"}.
    @ivar path: the request path, printable.
    @ivar client: C{host:port} of the peer (C{[host]:port} for IPv6).
    @ivar elapsed: seconds from when the work was registered to the end.
    @ivar ending: how it ended.
    @ivar cancelled: how many pending items were cancelled because of it.
    @ivar detail: more words about the end, e.g. C{"3 events sent"}.
    """

    method: str
    path: str
    client: str
    elapsed: float
    ending: Ending
    cancelled: int = 0
    detail: str = ""

    @property
    def reason(self) -> str:
        """
        The ending in words, e.g. C{"client closed the connection"}.
        """
        return self.ending.value


class Ledger:
    """
    Live pending requests and how every finished one ended.

    A request is pending from L{begin} until L{end}; L{reject} counts a request
    refused before any work was taken on.
    """

    def __init__(self) -> None:
        self._live: set[Hashable] = set()
        self.completed = 0
        self.interrupted = 0
        self.rejected = 0
        self.interruptions: Counter[Ending] = Counter()
        self._observers: list[Callable[[Outcome], None]] = []

    @property
    def pending(self) -> int:
        """
        How many requests hold pending work right now.
        """
        return len(self._live)

    def begin(self, token: Hashable) -> None:
        """
        Count C{token} as pending until L{end} is called with it.
        """
        self._live.add(token)

    def end(self, token: Hashable, outcome: Outcome) -> None:
        """
        Record how the pending request C{token} ended and tell the observers.
        """
        self._live.discard(token)
        if outcome.ending.interrupted:
            self.interrupted += 1
            self.interruptions[outcome.ending] += 1
        else:
            self.completed += 1
        for observer in self._observers:
            observer(outcome)

    def reject(self) -> None:
        """
        Count a request refused before it took on any work.
        """
        self.rejected += 1

    def observe(self, observer: Callable[[Outcome], None]) -> None:
        """
        Call C{observer} with every L{Outcome} from now on.
        """
        self._observers.append(observer)

    def snapshot(self) -> dict[str, int]:
        """
        The counters as a JSON-ready mapping.
        """
        return {
            "pending": self.pending,
            "completed": self.completed,
            "interrupted": self.interrupted,
            "rejected": self.rejected,
        }
