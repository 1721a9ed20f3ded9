"""
The log of outcomes: one line per interruption up to a rate, then one
summary line a second, so that a storm of aborts stays readable and cheap
while the counters stay exact.
"""

from __future__ import annotations

from collections import Counter

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from ._outcome import Ending, Pending
from ._text import _log_text

__all__ = ["INTERRUPTED_FORMAT", "SERVER_ENDED_FORMAT", "Reporter"]

log = Logger(namespace="twisted_close")

INTERRUPTED_FORMAT = (
    "Connection interrupted: {method} {path} from {client} "
    "after {elapsed:.2f} s ({reason}{detail})"
)
SERVER_ENDED_FORMAT = (
    "Ended by the server: {method} {path} from {client} "
    "after {elapsed:.2f} s ({reason}{detail})"
)
SUPPRESSED_FORMAT = "... and {suppressed} more interruptions ({by_reason})"


class Reporter:
    """
    Log each outcome that is not a completion, at most C{per_second} lines
    a second; count the rest and log them as one line when the second ends.
    """

    def __init__(self, clock: IReactorTime | None, per_second: int = 50) -> None:
        self._clock = clock
        self._per_second = per_second
        self._window = -1.0
        self._logged = 0
        self._suppressed: Counter[Ending] = Counter()
        self._summary: IDelayedCall | None = None

    def report(self, ending: Ending, pending: Pending) -> None:
        """
        Log how C{pending} was cut short, unless this second had its fill.
        """
        clock = self._clock
        if clock is not None:
            now = clock.seconds()
            if now >= self._window + 1.0:
                self._window = now
                self._logged = 0
            if self._logged >= self._per_second:
                self._suppressed[ending] += 1
                if self._summary is None:
                    wait = self._window + 1.0 - now
                    self._summary = clock.callLater(wait, self.summarize)
                return
            self._logged += 1
        outcome = pending.outcome
        assert outcome is not None
        log.info(
            SERVER_ENDED_FORMAT if outcome.ending.by_server else INTERRUPTED_FORMAT,
            outcome=outcome,
            # Escaped: a space in them cannot pass for the next field.
            method=_log_text(outcome.method),
            path=_log_text(outcome.path),
            client=outcome.client,
            elapsed=outcome.elapsed,
            reason=outcome.reason,
            ending=outcome.ending.code,
            detail=f"; {outcome.detail}" if outcome.detail else "",
            cancelled=outcome.cancelled,
        )

    def summarize(self) -> None:
        """
        Log the interruptions held back in this second, if any, as one line.
        """
        if self._summary is not None and self._summary.active():
            self._summary.cancel()
        self._summary = None
        if not self._suppressed:
            return
        held, self._suppressed = self._suppressed, Counter()
        log.info(
            SUPPRESSED_FORMAT,
            suppressed=sum(held.values()),
            by_reason=", ".join(f"{n} {e.value}" for e, n in held.most_common()),
            counts={e.code: n for e, n in held.items()},
        )
