"""
What the real-socket tests share: the global reactor, typed, a typed
pytest-twisted decorator, and a bounded poll.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, cast

import pytest_twisted
from twisted.internet import reactor as _reactor
from twisted.internet.interfaces import IReactorFDSet, IReactorTCP, IReactorTime
from twisted.internet.task import deferLater

tcp = cast(IReactorTCP, _reactor)
clock = cast(IReactorTime, _reactor)
fdset = cast(IReactorFDSet, _reactor)

_P = ParamSpec("_P")


def twisted_test(
    test: Callable[_P, Coroutine[Any, Any, None]],
) -> Callable[_P, Coroutine[Any, Any, None]]:
    """
    Run an C{async def} test on the reactor (pytest-twisted has no types).
    """
    return cast(
        Callable[_P, Coroutine[Any, Any, None]], pytest_twisted.ensureDeferred(test)
    )


async def wait_for(
    condition: Callable[[], object], what: str, timeout: float = 5.0
) -> None:
    """
    Poll C{condition} until it is true; fail after C{timeout} seconds.
    """
    deadline = clock.seconds() + timeout
    while not condition():
        if clock.seconds() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await deferLater(clock, 0.005)
