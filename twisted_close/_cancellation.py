"""
Tell a failure that only says "we cancelled this" from a real one.
"""

from __future__ import annotations

import asyncio

from twisted.internet.defer import CancelledError
from twisted.internet.error import ConnectingCancelledError
from twisted.python.failure import Failure

__all__ = ["is_cancellation"]


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
