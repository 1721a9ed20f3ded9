"""
Parsing of delays given by users: the C{?delay=} query argument and the
C{--delay}/C{--max-delay} options share one grammar and one set of reasons.
"""

from __future__ import annotations

import math
import re

__all__ = ["DelayError", "parse_delay"]

# ASCII digits only: str.isdigit and \d accept other scripts' digits, and
# float() would accept "1e3", "1_0", "inf" and "nan", none of which we want.
_DELAY = re.compile(r"[0-9]+(?:\.[0-9]+)?\Z")


class DelayError(ValueError):
    """
    A delay the user gave cannot be used; C{str()} is a one-line reason.
    """


def parse_delay(text: str, maximum: float | None = None, what: str = "delay") -> float:
    """
    Parse decimal seconds written as digits with an optional fraction.

    @param text: what the user wrote, e.g. C{"2"} or C{"0.5"}.
    @param maximum: the largest delay allowed, or C{None} for no bound.
    @param what: the noun that starts the reason, e.g. C{"grace"}.
    @return: the delay in seconds, finite, C{0 <= delay <= maximum}.
    @raise DelayError: with a one-line reason a user understands.
    """
    if text == "":
        raise DelayError(f"{what} is empty; give seconds such as 2 or 0.5")
    shown = text if len(text) <= 20 else text[:20] + "..."
    if not _DELAY.match(text):
        raise DelayError(
            f"{what} {shown!r} is not a number of seconds such as 2 or 0.5"
        )
    value = float(text)
    if not math.isfinite(value) or (maximum is not None and value > maximum):
        bound = "" if maximum is None else f" of {maximum:g} s"
        raise DelayError(f"{what} {shown} s is over the maximum{bound}")
    return value
