"""
twisted-close: tie server-side work to the client's presence in Twisted.

When a client goes away before its response is finished, cancel the work
it started and report who left, after how long, and why.
"""

from ._async import SAFE_METHODS, AsyncResource
from ._body import bound_request_bodies
from ._cancellation import Cancellable, is_cancellation
from ._delay import DelayError, parse_delay
from ._delayed import DelayedResource
from ._drain import GracefulDrain
from ._events import EventStream, EventStreamResource, StreamSource, counter_events
from ._forwarded import ForwardedFor, TrustedProxies, forwarded_client
from ._guard import ConnectionGuard, guard_connections
from ._host import AllowedHosts, HostCheck
from ._ledger import Ledger
from ._limits import Limits
from ._outcome import Ending, Outcome, Rejection
from ._policy import ConnectionPolicy, Delivery, HalfClose
from ._resource import WorkResource
from ._stream import HEARTBEAT, ServerSentEvent
from ._upstream import read_body
from ._version import __version__
from ._watch import RequestWatch, cancel_on_disconnect, classify

__all__ = [
    "HEARTBEAT",
    "SAFE_METHODS",
    "AllowedHosts",
    "AsyncResource",
    "Cancellable",
    "ConnectionGuard",
    "ConnectionPolicy",
    "DelayError",
    "DelayedResource",
    "Delivery",
    "Ending",
    "EventStream",
    "EventStreamResource",
    "ForwardedFor",
    "GracefulDrain",
    "HalfClose",
    "HostCheck",
    "Ledger",
    "Limits",
    "Outcome",
    "Rejection",
    "RequestWatch",
    "ServerSentEvent",
    "StreamSource",
    "TrustedProxies",
    "WorkResource",
    "__version__",
    "bound_request_bodies",
    "cancel_on_disconnect",
    "classify",
    "counter_events",
    "forwarded_client",
    "guard_connections",
    "is_cancellation",
    "parse_delay",
    "read_body",
]
