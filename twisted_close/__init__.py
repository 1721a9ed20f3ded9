"""
twisted-close: tie server-side work to the client's presence in Twisted.

When a client goes away before its response is finished, cancel the work
it started and report who left, after how long, and why.
"""

from ._delay import DelayError, parse_delay
from ._delayed import DelayedResource
from ._ledger import Ending, Ledger, Outcome
from ._lifecycle import Cancellable, RequestWatch, cancel_on_disconnect, classify

__all__ = [
    "Cancellable",
    "DelayError",
    "DelayedResource",
    "Ending",
    "Ledger",
    "Outcome",
    "RequestWatch",
    "cancel_on_disconnect",
    "classify",
    "parse_delay",
]
