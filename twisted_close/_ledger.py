"""
The ledger: the live set of pending requests and the outcome counters.

Stats, logs, metrics, the demo page and graceful shutdown all read this one
place, so that no second bookkeeping can drift from it.
"""

from __future__ import annotations

import enum
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime

__all__ = [
    "WAIT_BUCKETS",
    "CountsSource",
    "Ending",
    "Ledger",
    "Outcome",
    "Pending",
    "Totals",
]

WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
"""Upper bounds (seconds) of the histogram of time until a client left."""


class Ending(enum.Enum):
    """
    How a request ended.  The value is the reason in words a user understands.
    """

    COMPLETED = "completed"
    CLIENT_CLOSED = "client closed the connection"
    CLIENT_RESET = "connection reset by the client"
    CLIENT_LOST = "connection lost"
    STREAM_RESET = "client reset the stream"
    ALREADY_GONE = "client had already gone"
    SERVER_ABORTED = "connection aborted by the server"
    SERVER_CLOSED = "connection closed by the server"
    SHUTDOWN = "server shutting down"

    # Members are singletons: identity is their equality, and hashing by it
    # is done in C (Enum's own __hash__ is Python code, run for every count).
    __hash__ = object.__hash__

    # Plain attributes, set below: read once per request, they must be cheap
    # (a property with a set lookup hashes the member every time).
    interrupted: bool
    """Whether this ending cut the request short, by either side."""
    by_server: bool
    """Whether the server, not the client, cut the request short."""

    @property
    def code(self) -> str:
        """
        A short name for labels and JSON, e.g. C{"client_closed"}.
        """
        return str(self.name).lower()


_BY_SERVER = frozenset({Ending.SERVER_ABORTED, Ending.SERVER_CLOSED, Ending.SHUTDOWN})
for _ending in Ending:
    _ending.interrupted = _ending is not Ending.COMPLETED
    _ending.by_server = _ending in _BY_SERVER


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
        return str(self.ending.value)

    def as_dict(self) -> dict[str, Any]:
        """
        The record as JSON-ready values, the ending by its code.
        """
        fields = asdict(self)
        fields["ending"] = self.ending.code
        fields["reason"] = self.reason
        return fields


class Pending(Protocol):
    """
    What the ledger holds for a pending request: something the server can
    end (see L{twisted_close.RequestWatch.end_by_server}).
    """

    endless: bool

    @property
    def outcome(self) -> Outcome | None: ...

    def end_by_server(self, ending: Ending, retry_after: int = ...) -> None: ...

    def close_when_done(self) -> None: ...


class CountsSource(Protocol):
    """
    A L{Ledger}, or anything else that can sum counters up (the shared
    counters of several worker processes).
    """

    def totals(self) -> Totals: ...


class Ledger:
    """
    Live pending requests and how every finished one ended.

    A request is pending from L{begin} until L{end}; L{reject} counts a
    request refused before any work was taken on.  Every end but a
    completion is reported to L{reporter} (the log); L{observe}rs get every
    L{Outcome}.

    @ivar completed: requests answered in full.
    @ivar interrupted: requests cut short by their client.
    @ivar server_ended: requests cut short by the server (shutdown, a
        connection the server closed).
    @ivar rejected: requests refused at once (a bad request, overload,
        shutting down), by reason in L{rejections}.
    @ivar max_pending: past this many pending requests, L{admit} refuses.
    @ivar closing: set by a graceful shutdown; L{admit} refuses then.
    """

    def __init__(
        self,
        clock: IReactorTime | None = None,
        *,
        max_pending: int | None = None,
        log_per_second: int = 50,
    ) -> None:
        """
        @param clock: lets the reporter rate-limit its log lines; without
            one, every interruption is logged.
        @param max_pending: the most requests pending at once, or L{None}.
        @param log_per_second: interruptions logged one line each per
            second; past it, one summary line a second.
        """
        from ._report import Reporter

        self._live: dict[Pending, None] = {}
        self.completed = 0
        self.interruptions: Counter[Ending] = Counter()
        self.server_endings: Counter[Ending] = Counter()
        self.rejections: Counter[str] = Counter()
        # Time until a client left: counts per WAIT_BUCKETS bound, +Inf last.
        self.wait_buckets = [0] * (len(WAIT_BUCKETS) + 1)
        self.wait_sum = 0.0
        self.max_pending = max_pending
        self.closing = False
        self.reporter = Reporter(clock, log_per_second)
        self._observers: list[Callable[[Outcome], None]] = []
        self._idle: list[Deferred[None]] = []

    @property
    def pending(self) -> int:
        """
        How many requests hold pending work right now.
        """
        return len(self._live)

    # The totals are derived from their breakdowns, so they cannot drift.

    @property
    def interrupted(self) -> int:
        return sum(self.interruptions.values())

    @property
    def server_ended(self) -> int:
        return sum(self.server_endings.values())

    @property
    def rejected(self) -> int:
        return sum(self.rejections.values())

    def live(self) -> list[Pending]:
        """
        The pending requests, oldest first.
        """
        return list(self._live)

    def admit(self) -> str | None:
        """
        Whether a new request may take on work: L{None} if so, else the
        reason to refuse it (C{"shutting down"} or C{"overloaded"}).
        """
        if self.closing:
            return "shutting down"
        if self.max_pending is not None and len(self._live) >= self.max_pending:
            return "overloaded"
        return None

    def begin(self, token: Pending) -> None:
        """
        Count C{token} as pending until L{end} is called with it.
        """
        self._live[token] = None

    def end(self, token: Pending, ending: Ending, elapsed: float) -> None:
        """
        Record that the pending request C{token} ended, how and after how
        many seconds; report it and tell the observers its L{Outcome}.
        """
        self._live.pop(token, None)
        if ending is Ending.COMPLETED:
            self.completed += 1
        else:
            if ending.by_server:
                self.server_endings[ending] += 1
            else:
                self.interruptions[ending] += 1
                self.wait_buckets[bisect_left(WAIT_BUCKETS, elapsed)] += 1
                self.wait_sum += elapsed
            self.reporter.report(ending, token)
        if self._observers:
            outcome = token.outcome
            assert outcome is not None
            for observer in self._observers:
                observer(outcome)
        if not self._live and self._idle:
            waiting, self._idle = self._idle, []
            for d in waiting:
                d.callback(None)

    def reject(self, reason: str = "bad request") -> None:
        """
        Count a request refused before it took on any work.
        """
        self.rejections[reason] += 1

    def observe(self, observer: Callable[[Outcome], None]) -> None:
        """
        Call C{observer} with every L{Outcome} from now on.
        """
        self._observers.append(observer)

    def unobserve(self, observer: Callable[[Outcome], None]) -> None:
        """
        Stop calling C{observer} (undoes one L{observe}); nothing if it is
        not observing.  An outcome being handed out right now still reaches
        it: the list is replaced, not changed under L{end}'s loop.
        """
        observers = list(self._observers)
        if observer in observers:
            observers.remove(observer)
            self._observers = observers

    def when_idle(self) -> Deferred[None]:
        """
        A Deferred that fires once no request is pending (at once if none is).
        """
        if not self._live:
            return succeed(None)
        d: Deferred[None] = Deferred(lambda d: self._idle.remove(d))
        self._idle.append(d)
        return d

    def snapshot(self) -> dict[str, int]:
        """
        The counters as a JSON-ready mapping, as C{/stats} shows them.
        """
        return self.totals().snapshot()

    def state(self) -> dict[str, Any]:
        """
        Every counter as JSON-ready values, to merge with other processes'
        (see L{Totals}) or to carry over into a restarted one (L{restore}).
        """
        return {
            "pending": self.pending,
            "completed": self.completed,
            "interruptions": {e.code: n for e, n in self.interruptions.items()},
            "server_endings": {e.code: n for e, n in self.server_endings.items()},
            "rejections": dict(self.rejections),
            "wait_buckets": list(self.wait_buckets),
            "wait_sum": self.wait_sum,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """
        Carry on counting from C{state} (all but the pending requests, which
        died with whoever held them).
        """
        totals = Totals.of([{**state, "pending": 0}])
        self.completed = totals.completed
        self.interruptions = totals.interruptions
        self.server_endings = totals.server_endings
        self.rejections = totals.rejections
        self.wait_buckets = totals.wait_buckets
        self.wait_sum = totals.wait_sum

    def totals(self) -> Totals:
        """
        The counters now, as read by C{/stats} and C{/metrics}.
        """
        return Totals(
            pending=len(self._live),
            completed=self.completed,
            interruptions=Counter(self.interruptions),
            server_endings=Counter(self.server_endings),
            rejections=Counter(self.rejections),
            wait_buckets=list(self.wait_buckets),
            wait_sum=self.wait_sum,
        )


_CODES = {e.code: e for e in Ending}


@dataclass
class Totals:
    """
    Counters summed over one or more ledgers' L{Ledger.state}s.
    """

    pending: int = 0
    completed: int = 0
    interruptions: Counter[Ending] = field(default_factory=Counter)
    server_endings: Counter[Ending] = field(default_factory=Counter)
    rejections: Counter[str] = field(default_factory=Counter)
    wait_buckets: list[int] = field(
        default_factory=lambda: [0] * (len(WAIT_BUCKETS) + 1)
    )
    wait_sum: float = 0.0

    @classmethod
    def of(cls, states: Iterable[dict[str, Any]]) -> Totals:
        totals = cls()
        for state in states:
            totals.pending += state["pending"]
            totals.completed += state["completed"]
            for code, n in state["interruptions"].items():
                totals.interruptions[_CODES[code]] += n
            for code, n in state["server_endings"].items():
                totals.server_endings[_CODES[code]] += n
            totals.rejections.update(state["rejections"])
            for i, n in enumerate(state["wait_buckets"]):
                totals.wait_buckets[i] += n
            totals.wait_sum += state["wait_sum"]
        return totals

    @property
    def interrupted(self) -> int:
        return sum(self.interruptions.values())

    @property
    def server_ended(self) -> int:
        return sum(self.server_endings.values())

    @property
    def rejected(self) -> int:
        return sum(self.rejections.values())

    def snapshot(self) -> dict[str, int]:
        """
        The counters of C{/stats}.
        """
        return {
            "pending": self.pending,
            "completed": self.completed,
            "interrupted": self.interrupted,
            "rejected": self.rejected,
            "server_ended": self.server_ended,
        }
