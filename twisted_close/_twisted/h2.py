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
from twisted.web.http_headers import Headers

__all__ = [
    "abort_stream",
    "answer_and_stop",
    "h2_connection",
    "h2_idle",
    "record_stream_loss",
    "stream_blocked",
    "stream_end_pending",
    "stream_queued",
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


def answer_and_stop(
    channel: object, code: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> bool:
    """
    Answer an HTTP/2 stream whose request is still arriving with C{code},
    C{headers} and C{body}, then, once its end went out, reset it with
    C{NO_ERROR}: the client is to stop sending the rest (RFC 9113 section
    8.1), and its connection goes on.  Say whether C{channel} was an
    HTTP/2 stream.

    Relies on C{H2Stream._conn} (its C{H2Connection}), on a stream being
    registered in C{H2Connection.streams} only after its C{__init__} (which
    calls C{Request.gotLength}): the answer is written on the next turn of
    C{H2Connection._reactor}; on C{H2Stream.writeHeaders}, C{write} and
    C{requestDone} queueing the answer, on the Deferred of
    C{H2Connection._streamCleanupCallbacks} firing once its end went out,
    and on C{H2Connection.conn} (the C{h2} state machine) and
    C{_tryToWriteControlData} to send the reset.
    """
    connection: Any = getattr(channel, "_conn", None)
    stream_id = getattr(channel, "streamID", None)
    if connection is None or stream_id is None:
        return False
    stream: Any = channel

    def stop(result: object) -> object:
        try:
            connection.conn.reset_stream(stream_id, 0)  # NO_ERROR
            connection._tryToWriteControlData()
        except Exception:
            pass  # the client ended or reset it first: nothing to stop
        return result

    def answer() -> None:
        if connection.streams.get(stream_id) is not stream:
            return  # reset by the client, or its connection gone
        stream.writeHeaders(
            b"HTTP/2", b"%d" % (code,), b"", Headers({k: [v] for k, v in headers})
        )
        stream.write(body)
        stream.requestDone(None)
        cleanup = connection._streamCleanupCallbacks.get(stream_id)
        if cleanup is not None:
            cleanup.addBoth(stop)

    connection._reactor.callLater(0, answer)
    return True


def stream_queued(channel: object) -> int:
    """
    How many bytes of an HTTP/2 stream's answer its connection holds back
    (flow control, a full transport); 0 for anything else.

    Relies on C{H2Connection._outboundStreamQueues}: a deque per stream of
    the data written and not yet sent (and a marker for its end).
    """
    connection = getattr(channel, "_conn", None)
    queues = getattr(connection, "_outboundStreamQueues", None)
    if not queues:
        return 0
    queue = queues.get(getattr(channel, "streamID", None), ())
    return sum(len(data) for data in queue if isinstance(data, bytes))
