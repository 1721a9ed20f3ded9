"""
The log of outcomes: one line per interruption up to a rate, in lines and
in bytes, then one summary line a second, so that a storm of aborts stays
readable and cheap, and a client sending long paths cannot fill the disk,
while the counters stay exact.
"""

from __future__ import annotations

from collections import Counter
from json.encoder import encode_basestring_ascii as _string

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from ._outcome import Ending, Outcome, Pending
from ._text import _log_text

__all__ = ["INTERRUPTED_FORMAT", "SERVER_ENDED_FORMAT", "Reporter"]

log = Logger(namespace="twisted_close")

INTERRUPTED_FORMAT = (
    "Connection interrupted: {method} {path} from {client} "
    "after {elapsed:.2f} s{during} ({reason}{detail})"
)
SERVER_ENDED_FORMAT = (
    "Ended by the server: {method} {path} from {client} "
    "after {elapsed:.2f} s{during} ({reason}{detail})"
)
SUPPRESSED_FORMAT = "... and {suppressed} more interruptions ({by_reason})"


BYTES_PER_SECOND = 64 * 1024
"""The most bytes of outcome lines logged a second, by default."""

_LINE = 1200
"""About what a JSON log line holds besides its fields from the network."""


def _json_bytes(outcome: Outcome, method: str, path: str) -> int:
    # What the fields from the network add to a JSON log line.
    words = len(_string(method)) + len(_string(path))
    raw = len(_string(outcome.method)) + len(_string(outcome.path))
    return 3 * words + raw + 4 * len(_string(outcome.detail))


class Reporter:
    """
    Log each outcome that is not a completion, at most C{per_second} lines
    and C{bytes_per_second} bytes a second; count the rest and log them as
    one line when the second ends.

    A line's bytes are reckoned as the JSON log writes it (the text log
    writes less), where a field from the network appears four times (the
    outcome's own, the escaped word and Twisted's two flattened copies of
    it), JSON-escaped: each is bounded (L{twisted_close._text.FIELD_BYTES}),
    and so is their sum a second.
    """

    def __init__(
        self,
        clock: IReactorTime | None,
        per_second: int = 50,
        bytes_per_second: int = BYTES_PER_SECOND,
    ) -> None:
        self._clock = clock
        self._per_second = per_second
        self._bytes_per_second = bytes_per_second
        self._window = -1.0
        self._logged = 0
        self._bytes = 0
        self._suppressed: Counter[Ending] = Counter()
        self._summary: IDelayedCall | None = None

    def report(self, ending: Ending, pending: Pending) -> None:
        """
        Log how C{pending} was cut short, unless this second had its fill.
        """
        clock = self._clock
        now = 0.0
        if clock is not None:
            now = clock.seconds()
            if now >= self._window + 1.0:
                self._window = now
                self._logged = self._bytes = 0
            if self._logged >= self._per_second:
                self._hold(ending, now)
                return
        # Made only for a line that may be logged: a storm costs no more.
        outcome = pending.outcome
        assert outcome is not None
        # Escaped: a space in them cannot pass for the next field.
        method, path = _log_text(outcome.method), _log_text(outcome.path)
        if clock is not None:
            size = _LINE + _json_bytes(outcome, method, path)
            if self._bytes + size > self._bytes_per_second:
                self._hold(ending, now)
                return
            self._logged += 1
            self._bytes += size
        log.info(
            SERVER_ENDED_FORMAT if outcome.ending.by_server else INTERRUPTED_FORMAT,
            outcome=outcome,
            method=method,
            path=path,
            client=outcome.client,
            elapsed=outcome.elapsed,
            # The phase: "while waiting", "while answering", "while delivering".
            during=f" while {outcome.phase}" if outcome.phase else "",
            reason=outcome.reason,
            ending=outcome.ending.code,
            detail=f"; {outcome.detail}" if outcome.detail else "",
            cancelled=outcome.cancelled,
        )

    def _hold(self, ending: Ending, now: float) -> None:
        # Counted, said in the second's summary line.
        self._suppressed[ending] += 1
        if self._summary is None and self._clock is not None:
            wait = self._window + 1.0 - now
            self._summary = self._clock.callLater(wait, self.summarize)

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
