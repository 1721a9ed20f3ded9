"""
twisted-close: tie server-side work to the client's presence in Twisted.

When a client goes away before its response is finished, cancel the work
it started and report who left, after how long, and why.
"""

from ._async import SAFE_METHODS, AsyncResource
from ._connections import ConnectionGuard, guard_connections
from ._delay import DelayError, parse_delay
from ._delayed import DelayedResource
from ._drain import GracefulDrain
from ._ledger import Ledger
from ._outcome import Ending, Outcome, Rejection
from ._resource import WorkResource
from ._stream import (
    HEARTBEAT,
    EventStream,
    EventStreamResource,
    ServerSentEvent,
    StreamSource,
    demo_events,
)
from ._twistedweb import classify
from ._watch import Cancellable, RequestWatch, cancel_on_disconnect

__all__ = [
    "HEARTBEAT",
    "SAFE_METHODS",
    "AsyncResource",
    "Cancellable",
    "ConnectionGuard",
    "DelayError",
    "DelayedResource",
    "Ending",
    "EventStream",
    "EventStreamResource",
    "GracefulDrain",
    "Ledger",
    "Outcome",
    "Rejection",
    "RequestWatch",
    "ServerSentEvent",
    "StreamSource",
    "WorkResource",
    "cancel_on_disconnect",
    "classify",
    "demo_events",
    "guard_connections",
    "parse_delay",
]
