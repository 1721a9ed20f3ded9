"""
The ledger: the live set of pending requests and the outcome counters.

Stats, logs, metrics, the demo page and graceful shutdown all read this one
place, so that no second bookkeeping can drift from it.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IRequest

from ._limits import Limits
from ._outcome import PHASES, Ending, Outcome, Pending, Rejection
from ._report import Reporter

__all__ = ["WAIT_BUCKETS", "CountsSource", "Ledger", "Totals"]

WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
"""Upper bounds (seconds) of the histogram of time until a client left."""

_ENDINGS = {e.code: e for e in Ending}
_REJECTIONS = {r.code: r for r in Rejection}


def _no_waits() -> list[int]:
    return [0] * (len(WAIT_BUCKETS) + 1)


@dataclass
class Totals:
    """
    The counters of one L{Ledger}, or summed over several ledgers'
    L{state}s (the worker processes of one server).

    @ivar pending: requests holding pending work.
    @ivar completed: requests answered in full.
    @ivar interruptions: requests cut short by their client, by ending.
    @ivar server_endings: requests cut short by the server, by ending.
    @ivar rejections: requests refused at once, by reason.
    @ivar wait_buckets: interruptions per L{WAIT_BUCKETS} bound of the time
        until the client left, C{+Inf} last.
    @ivar wait_sum: seconds until the client left, summed.
    @ivar phases: requests cut short (by either side), by ending and the
        phase they were cut in (C{waiting}, C{answering}, C{delivering}).
    """

    pending: int = 0
    completed: int = 0
    interruptions: Counter[Ending] = field(default_factory=Counter)
    server_endings: Counter[Ending] = field(default_factory=Counter)
    rejections: Counter[Rejection] = field(default_factory=Counter)
    wait_buckets: list[int] = field(default_factory=_no_waits)
    wait_sum: float = 0.0
    phases: Counter[tuple[Ending, str]] = field(default_factory=Counter)

    @classmethod
    def of(cls, states: Iterable[dict[str, Any]]) -> Totals:
        """
        The sum of C{states}, each as L{state} gives it.
        """
        totals = cls()
        for state in states:
            totals.pending += state["pending"]
            totals.completed += state["completed"]
            for code, n in state["interruptions"].items():
                totals.interruptions[_ENDINGS[code]] += n
            for code, n in state["server_endings"].items():
                totals.server_endings[_ENDINGS[code]] += n
            for code, n in state["rejections"].items():
                totals.rejections[_REJECTIONS[code]] += n
            for i, n in enumerate(state["wait_buckets"]):
                totals.wait_buckets[i] += n
            totals.wait_sum += state["wait_sum"]
            for key, n in state.get("phases", {}).items():
                code, _, phase = key.partition("/")
                totals.phases[(_ENDINGS[code], phase)] += n
        return totals

    # The totals are derived from their breakdowns, so they cannot drift.

    @property
    def interrupted(self) -> int:
        """
        Requests cut short by their client.
        """
        return sum(self.interruptions.values())

    @property
    def server_ended(self) -> int:
        """
        Requests cut short by the server.
        """
        return sum(self.server_endings.values())

    @property
    def rejected(self) -> int:
        """
        Requests refused at once.
        """
        return sum(self.rejections.values())

    def by_phase(self) -> dict[str, int]:
        """
        Requests cut short (by either side) by the phase they were in:
        C{waiting}, C{answering} and C{delivering}, each present.
        """
        counts = dict.fromkeys(PHASES, 0)
        for (_ending, phase), n in self.phases.items():
            if phase in counts:
                counts[phase] += n
        return counts

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

    def state(self) -> dict[str, Any]:
        """
        Every counter as JSON-ready values, to merge with other processes'
        (L{of}) or to carry over into a restarted one (L{Ledger.restore}).
        """
        return {
            "pending": self.pending,
            "completed": self.completed,
            "interruptions": {e.code: n for e, n in self.interruptions.items()},
            "server_endings": {e.code: n for e, n in self.server_endings.items()},
            "rejections": {r.code: n for r, n in self.rejections.items()},
            "wait_buckets": list(self.wait_buckets),
            "wait_sum": self.wait_sum,
            "phases": {f"{e.code}/{p}": n for (e, p), n in self.phases.items()},
        }

    def copy(self) -> Totals:
        """
        An independent copy.
        """
        return Totals(
            pending=self.pending,
            completed=self.completed,
            interruptions=Counter(self.interruptions),
            server_endings=Counter(self.server_endings),
            rejections=Counter(self.rejections),
            wait_buckets=list(self.wait_buckets),
            wait_sum=self.wait_sum,
            phases=Counter(self.phases),
        )


class _Ended:
    # A finished request's outcome, as the reporter and observers read it.
    __slots__ = ("outcome",)

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome

    endless = False

    @property
    def phase(self) -> str:
        return self.outcome.phase

    def end_by_server(self, ending: Ending, retry_after: int = 5) -> None:
        pass

    def close_when_done(self) -> None:
        pass


class CountsSource(Protocol):
    """
    A L{Ledger}, or anything else that can sum counters up (the shared
    counters of several worker processes).
    """

    def totals(self) -> Totals:
        """
        The counters now.
        """


class Ledger:
    """
    Live pending requests and how every finished one ended.

    A request is pending from L{begin} until L{end}; L{reject} counts a
    request refused before any work was taken on.  Every end but a
    completion is reported to the L{Reporter} (the log); L{observe}rs get
    every L{Outcome}.  What may begin is for its L{limits} to say: the
    ledger counts each request there as it begins and ends.

    Endless requests (event streams) are pending too, as C{/stats} shows,
    but not pending work: L{limits} counts them as streams.
    """

    def __init__(
        self,
        clock: IReactorTime | None = None,
        *,
        limits: Limits | None = None,
        log_per_second: int = 50,
        reporter: Reporter | None = None,
    ) -> None:
        """
        @param clock: lets the reporter rate-limit its log lines; without
            one, every interruption is logged.
        @param limits: what requests are admitted against (see L{Limits}),
            shared with the resources counting into this ledger; no caps by
            default.
        @param log_per_second: interruptions logged one line each per
            second; past it, one summary line a second.
        @param reporter: what logs the interruptions; one made from C{clock}
            and C{log_per_second} by default.
        """
        # Each live request, with what limits.began() returned for it.
        self._live: dict[Pending, str | None] = {}
        self._counts = Totals()
        self._reporter = (
            Reporter(clock, log_per_second) if reporter is None else reporter
        )
        self._observers: list[Callable[[Outcome], None]] = []
        self._idle: list[Deferred[None]] = []
        self.limits = Limits() if limits is None else limits

    @property
    def pending(self) -> int:
        """
        How many requests hold pending work right now.
        """
        return len(self._live)

    @property
    def completed(self) -> int:
        """
        Requests answered in full.
        """
        return self._counts.completed

    @property
    def interrupted(self) -> int:
        """
        Requests cut short by their client.
        """
        return self._counts.interrupted

    @property
    def server_ended(self) -> int:
        """
        Requests cut short by the server (shutdown, a connection the server
        closed).
        """
        return self._counts.server_ended

    @property
    def rejected(self) -> int:
        """
        Requests refused at once (a bad request, overload, shutting down).
        """
        return self._counts.rejected

    @property
    def interruptions(self) -> Counter[Ending]:
        """
        L{interrupted}, by ending.
        """
        return self._counts.interruptions

    @property
    def server_endings(self) -> Counter[Ending]:
        """
        L{server_ended}, by ending.
        """
        return self._counts.server_endings

    @property
    def rejections(self) -> Counter[Rejection]:
        """
        L{rejected}, by reason.
        """
        return self._counts.rejections

    def live(self) -> list[Pending]:
        """
        The pending requests, oldest first.
        """
        return list(self._live)

    def begin(self, token: Pending, request: IRequest | None = None) -> None:
        """
        Count C{token} as pending until L{end} is called with it, in
        L{limits} too (as a stream if it is C{endless}), with its
        C{request}'s client.
        """
        self._live[token] = self.limits.began(request, token.endless)

    def end(self, token: Pending, ending: Ending, elapsed: float) -> None:
        """
        Record that the pending request C{token} ended, how and after how
        many seconds; report it and tell the observers its L{Outcome}.
        """
        try:
            counted = self._live.pop(token)
        except KeyError:
            pass  # never pending here: see record()
        else:
            self.limits.ended(counted)
        counts = self._counts
        if ending is Ending.COMPLETED:
            counts.completed += 1
        else:
            if ending.by_server:
                counts.server_endings[ending] += 1
            else:
                counts.interruptions[ending] += 1
                counts.wait_buckets[bisect_left(WAIT_BUCKETS, elapsed)] += 1
                counts.wait_sum += elapsed
            counts.phases[(ending, token.phase)] += 1
            self._reporter.report(ending, token)
        if self._observers:
            outcome = token.outcome
            assert outcome is not None
            for observer in self._observers:
                observer(outcome)
        if not self._live and self._idle:
            waiting, self._idle = self._idle, []
            for d in waiting:
                d.callback(None)

    def record(self, outcome: Outcome) -> None:
        """
        Count, report and hand out the L{Outcome} of a request that was
        never pending here (e.g. a reader of the ledger the server dropped).
        """
        # Never pending, so end() finds nothing to let go of.
        self.end(_Ended(outcome), outcome.ending, outcome.elapsed)

    def reject(self, reason: Rejection = Rejection.BAD_REQUEST) -> None:
        """
        Count a request refused before it took on any work.
        """
        self._counts.rejections[reason] += 1

    def flush_log(self) -> None:
        """
        Log at once the interruptions that the rate limit holds back (they
        would be lost with the process).
        """
        self._reporter.summarize()

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
        Every counter as JSON-ready values (see L{Totals.state}).
        """
        return self.totals().state()

    def restore(self, state: dict[str, Any]) -> None:
        """
        Carry on counting from C{state} (all but the pending requests, which
        died with whoever held them).
        """
        self._counts = Totals.of([{**state, "pending": 0}])

    def totals(self) -> Totals:
        """
        The counters now, as read by C{/stats} and C{/metrics}.
        """
        totals = self._counts.copy()
        totals.pending = len(self._live)
        return totals
