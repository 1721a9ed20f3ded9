"""
The clock a resource runs on: the one given, or the global reactor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast
from weakref import WeakKeyDictionary

from twisted.internet.interfaces import IReactorTime

__all__ = ["PerClock", "default_clock"]

T = TypeVar("T")


def default_clock(clock: IReactorTime | None) -> IReactorTime:
    """
    C{clock}, or the global reactor when none is given; the reactor is only
    imported then, never when this package is imported.
    """
    if clock is not None:
        return clock
    from twisted.internet import reactor

    return cast(IReactorTime, reactor)


class PerClock(Generic[T]):
    """
    One C{T} per clock, made by C{make(clock)} the first time it is asked
    for, and let go with the clock.
    """

    def __init__(self, make: Callable[[Any], T]) -> None:
        self._make = make
        self._all: WeakKeyDictionary[object, T] = WeakKeyDictionary()
        # The last clock asked about and its value: asked once per request,
        # and a weak dictionary's lookup costs several times an identity test.
        self._last: tuple[object, T | None] = (None, None)

    def __call__(self, clock: object) -> T:
        """
        The value of C{clock}.
        """
        last_clock, last = self._last
        if last_clock is clock and last is not None:
            return last
        try:
            found = self._all[clock]
        except KeyError:
            found = self._all[clock] = self._make(clock)
        except TypeError:
            # Not weakly referable: made each time, kept by none.
            return self._make(clock)
        self._last = (clock, found)
        return found
