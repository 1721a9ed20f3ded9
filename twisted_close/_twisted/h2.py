"""
An HTTP/2 stream (twisted.web's C{H2Stream}): its end behind flow control, and
resetting it alone; an HTTP/2 connection (C{H2Connection}) with no stream open.

Each function says what Twisted behaviour it relies on; C{tests/test_twisted_h2.py}
pins each of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

__all__ = [
    "abort_stream",
    "h2_connection",
    "h2_idle",
    "record_stream_loss",
    "stream_blocked",
    "stream_end_pending",
]


def stream_end_pending(channel: object) -> Deferred[object] | None:
    """
    For an HTTP/2 stream whose request has finished but whose end
    (C{END_STREAM}) has not yet gone out: a Deferred that fires once the
    stream is done with, sent or not.  C{None} once it is done with, or for
    anything else.  Ask only once the request has finished: before, a
    stream is not done with either, and this says so.

    Relies on C{H2Stream._conn}, C{H2Stream.streamID} and
    C{H2Connection._streamCleanupCallbacks}: the Deferred
    C{H2Connection._requestDone} fires when the stream's end was written,
    or when it was reset or its connection lost (then after the stream's
    C{connectionLost}).  C{request.finish()} only queues the end behind the
    data that flow control holds back.
    """
    connection = getattr(channel, "_conn", None)
    if connection is None:
        return None
    cleanups = getattr(connection, "_streamCleanupCallbacks", None)
    d = None if cleanups is None else cleanups.get(getattr(channel, "streamID", None))
    if d is None or d.called:
        return None
    done: Deferred[object] = Deferred()

    def tell(result: object) -> object:
        done.callback(None)
        return result

    d.addBoth(tell)
    return done


def stream_blocked(channel: object) -> bool:
    """
    Whether an HTTP/2 stream has data queued that its flow-control window
    does not let out, or its connection waits on a full transport.

    Relies on C{H2Connection.remainingOutboundWindow} (window less what is
    queued) and C{H2Connection._consumerBlocked}.
    """
    connection = getattr(channel, "_conn", None)
    if connection is None:
        return False
    if getattr(connection, "_consumerBlocked", None) is not None:
        return True
    try:
        return bool(connection.remainingOutboundWindow(channel.streamID) < 0)  # type: ignore[attr-defined]
    except Exception:
        return False


def abort_stream(channel: object) -> None:
    """
    Reset an HTTP/2 stream (RST_STREAM), its connection going on.

    Relies on C{H2Stream.abortConnection} resetting that stream alone.
    """
    abort = getattr(channel, "abortConnection", None)
    if callable(abort):
        abort()


def record_stream_loss(channel: object, record: Callable[[Failure], None]) -> None:
    """
    Call C{record} with the reason an HTTP/2 stream is told it was lost (a
    reset, its connection going) after its request finished, when the
    request itself is no longer told.

    Relies on C{H2Connection} calling C{H2Stream.connectionLost} before
    C{_requestDone} for a reset stream or a lost connection, and not when
    the stream's end was sent.
    """
    untyped: Any = channel
    below = untyped.connectionLost

    def connection_lost(reason: Failure) -> None:
        record(reason)
        below(reason)

    untyped.connectionLost = connection_lost


def h2_connection(protocol: object) -> Any:
    """
    The C{H2Connection} behind a protocol a C{Site} built, once ALPN chose
    h2; else C{None}.

    Relies on C{_GenericHTTPChannelProtocol._channel}, replaced by an
    C{H2Connection} when ALPN chose h2, which has C{streams} (an
    C{HTTPChannel} has none).
    """
    channel = getattr(protocol, "_channel", None)
    return channel if isinstance(getattr(channel, "streams", None), dict) else None


def h2_idle(connection: Any) -> bool:
    """
    Whether the C{H2Connection} C{connection} has no stream open and
    nothing held back to send: closing it loses no request and no answer.

    Relies on C{H2Connection.streams}, its open streams by id (a stream
    leaves it in C{_requestDone}, once its end was written, or on a reset),
    on C{H2Connection._consumerBlocked} (a transport that takes no more) and
    C{_bufferedControlFrames} (frames held back meanwhile).
    """
    if connection.streams:
        return False
    return getattr(connection, "_consumerBlocked", None) is None and not getattr(
        connection, "_bufferedControlFrames", None
    )
