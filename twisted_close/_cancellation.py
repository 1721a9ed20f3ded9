"""
What can be cancelled (L{Cancellable}), cancelling it (L{cancel}), and
telling a failure that only says "we cancelled this" from a real one.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, runtime_checkable

from twisted.internet.defer import CancelledError
from twisted.internet.error import ConnectingCancelledError
from twisted.python.failure import Failure

__all__ = ["Cancellable", "cancel", "is_cancellation"]


def is_cancellation(reason: Failure) -> bool:
    """
    Whether C{reason} is the result of cancelling the work that failed.

    Twisted's C{CancelledError}, asyncio's, a connection attempt cancelled
    (C{ConnectingCancelledError}), and the HTTP client's wrappers that hold
    one of those among their C{reasons}: a cancelled treq or C{Agent} request
    fails with C{ResponseNeverReceived([CancelledError])}, not with
    C{CancelledError} itself.
    """
    if reason.check(CancelledError, asyncio.CancelledError, ConnectingCancelledError):
        return True
    # twisted.web's _WrapperException (ResponseNeverReceived, ResponseFailed,
    # RequestTransmissionFailed): duck-typed, so that this module does not
    # import the HTTP client.
    reasons = getattr(reason.value, "reasons", None)
    if not isinstance(reasons, list):
        return False
    return any(isinstance(r, Failure) and is_cancellation(r) for r in reasons)


@runtime_checkable
class Cancellable(Protocol):
    """
    Anything with C{cancel()}: an C{IDelayedCall}, a C{Deferred}, an
    asyncio C{Future} or C{Task}.
    """

    # object, not None: Future.cancel() returns a bool.
    def cancel(self) -> object: ...


def cancel(item: Cancellable) -> bool:
    """
    Cancel C{item} if it is still pending; say whether it was.
    """
    active = getattr(item, "active", None)
    if active is not None:
        # An IDelayedCall: cancel() raises once the call has run or was
        # cancelled.  (Asked first, and alone: an attribute it lacks costs
        # getattr() an exception, and this runs for every interruption.)
        if not active():
            return False
        item.cancel()
        return True
    done = getattr(item, "done", None)
    if callable(done):
        # An asyncio Future or Task: cancel() is a no-op once it is done.
        was_pending = not done()
    else:
        # Deferred.cancel() is harmless after it fired (and reaches a Deferred
        # it is waiting on), so it is called either way; it only counts if
        # unfired, or "called" but paused waiting on another (a treq call).
        was_pending = not getattr(item, "called", False) or bool(
            getattr(item, "paused", 0)
        )
    item.cancel()
    return was_pending
