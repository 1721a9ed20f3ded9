"""
The clock a resource runs on: the one given, or the global reactor.
"""

from __future__ import annotations

from typing import cast

from twisted.internet.interfaces import IReactorTime

__all__ = ["default_clock"]


def default_clock(clock: IReactorTime | None) -> IReactorTime:
    """
    C{clock}, or the global reactor when none is given; the reactor is only
    imported then, never when this package is imported.
    """
    if clock is not None:
        return clock
    from twisted.internet import reactor

    return cast(IReactorTime, reactor)
