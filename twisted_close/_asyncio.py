"""
Run a request's coroutine on the loop its reactor runs on.

On the asyncio reactor (C{AsyncioSelectorReactor}) the coroutine runs as an
asyncio C{Task}, so it may await asyncio things (C{asyncio.sleep}, an
aiohttp call, an asyncio lock) as well as C{Deferred}s; cancelling the
C{Deferred} that stands for it cancels the Task.  On any other reactor it
runs through C{Deferred.fromCoroutine} as before, and awaiting an asyncio
future fails with L{AsyncioReactorNeeded}, which says what to do.
"""

from __future__ import annotations

import asyncio
from asyncio import AbstractEventLoop
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

from twisted.internet.defer import Deferred

from ._twisted.reactor import asyncio_event_loop

__all__ = ["AsyncioReactorNeeded", "asyncio_event_loop", "run_coroutine"]

_T = TypeVar("_T")

HOW = (
    "needs the asyncio reactor: run twistd -r asyncio, or install "
    "twisted.internet.asyncioreactor before importing the reactor"
)


class AsyncioReactorNeeded(RuntimeError):
    """
    A coroutine awaited something of asyncio's on a reactor that does not run
    an asyncio event loop.
    """


def run_coroutine(
    coroutine: Coroutine[Any, Any, _T], loop: AbstractEventLoop | None
) -> Deferred[_T]:
    """
    Start C{coroutine}; the C{Deferred} fires with its result, and cancelling
    it cancels the coroutine at its C{await}.

    @param loop: the asyncio loop the reactor runs on (see
        L{asyncio_event_loop}): the coroutine runs as a Task on it.  C{None}:
        through C{Deferred.fromCoroutine}, awaiting C{Deferred}s only.
    """
    if loop is None:
        return Deferred.fromCoroutine(_relay(coroutine, on_asyncio=False))
    return Deferred.fromFuture(loop.create_task(_on_asyncio(coroutine)))


async def _on_asyncio(coroutine: Coroutine[Any, Any, _T]) -> _T:
    result: _T = await _Awaitable(_relay(coroutine, on_asyncio=True))
    return result


class _Awaitable:
    def __init__(self, steps: Generator[Any, Any, Any]) -> None:
        self.steps = steps

    def __await__(self) -> Generator[Any, Any, Any]:
        return self.steps


def _relay(
    coroutine: Coroutine[Any, Any, _T], on_asyncio: bool
) -> Generator[Any, Any, _T]:
    """
    Step C{coroutine}, handing what it awaits to the driver above: an asyncio
    Task, or C{Deferred.fromCoroutine}'s driver.

    A Task only knows asyncio futures: a C{Deferred} is waited for through
    one (L{_fired}), and cancelled if the Task is cancelled meanwhile.
    Twisted's driver would send an asyncio future straight back ("await
    wasn't used with future"): that becomes a clear L{AsyncioReactorNeeded},
    raised at the coroutine's C{await} so that its C{finally} blocks run.
    """
    value: object = None
    error: BaseException | None = None
    while True:
        try:
            if error is None:
                waiting = coroutine.send(value)
            else:
                waiting = coroutine.throw(error)
        except StopIteration as stop:
            result: _T = stop.value
            return result
        except RuntimeError as e:
            # What asyncio.sleep() and most asyncio clients raise first.
            if not on_asyncio and str(e) == "no running event loop":
                raise AsyncioReactorNeeded(f"used asyncio, which {HOW}") from e
            raise
        value = error = None
        if not on_asyncio and asyncio.isfuture(waiting):
            error = AsyncioReactorNeeded(
                f"awaited an asyncio {type(waiting).__name__}, which {HOW}"
            )
            continue
        deferred = waiting if on_asyncio and isinstance(waiting, Deferred) else None
        try:
            if deferred is not None:
                yield from _fired(deferred)
            else:
                value = yield waiting
        except GeneratorExit:
            coroutine.close()
            raise
        except asyncio.CancelledError as e:
            if deferred is not None:
                # The coroutine sees the Deferred's own cancellation
                # (Twisted's CancelledError, or what its canceller gives),
                # as on any other reactor.  A Deferred waiting on another is
                # "called" but paused: cancel it all the same (a fired one
                # ignores it).
                deferred.cancel()
            else:
                error = e
        except BaseException as e:
            error = e


def _fired(deferred: Deferred[Any]) -> Generator[Any, None, None]:
    """
    Wait until C{deferred} has a result; leave the result in it, for the
    C{await} on it to take.
    """
    future = asyncio.get_running_loop().create_future()

    def wake(result: object) -> object:
        if not future.done():
            future.set_result(None)
        return result

    deferred.addBoth(wake)
    yield from future.__await__()
