"""
Streamed answers: L{ServerSentEvent}s, a response written a piece at a
time for as long as the client reads (L{PushStream}), and the resource that
admits, keeps and ends such streams (L{StreamsResource}).  C{_events} builds
the event streams on them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.logger import Logger
from twisted.web import http
from twisted.web.iweb import IRequest
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from ._ledger import Ledger
from ._limits import _cap
from ._outcome import Ending
from ._policy import DEFAULT_POLICY, ConnectionPolicy
from ._resource import WorkResource
from ._twisted.h2 import stream_queued
from ._twisted.request import (
    channel_of,
    request_state,
    transport_of,
    transport_paused,
)
from ._twisted.tcp import unsent_bytes

__all__ = [
    "DEFAULT_MAX_UNSENT",
    "HEARTBEAT",
    "PushStream",
    "ServerSentEvent",
    "StreamsResource",
    "positive_seconds",
    "stream_headers",
]

log = Logger(namespace="twisted_close")

DEFAULT_MAX_UNSENT = 256 * 1024
"""The most bytes a stream's client may leave unsent before it is dropped."""

HEARTBEAT = b": heartbeat\n\n"
"""The comment sent every C{heartbeat} seconds; clients ignore it."""

# The only line ends of text/event-stream.  str.splitlines() would also split
# on \v, \f, \x1c-\x1e, \x85, \u2028 and \u2029, which are data to a client.
_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """
    One event of a C{text/event-stream}.

    C{data} may hold several lines: each is sent as its own C{data:} line,
    so no line end in it can end the event early or add a field.  (A client
    joins them with LF: a CR or CRLF in C{data} arrives as an LF.)

    @ivar data: the text the client's C{onmessage} gets as C{event.data}.
    @ivar event: the event type (C{addEventListener(event, ...)}), or
        C{None} for C{"message"}.
    @ivar id: the id a reconnecting client sends back as C{Last-Event-ID},
        or C{None} for none.
    @ivar retry: how many milliseconds a client waits before it reconnects,
        or C{None} to leave it as it is.
    @raise ValueError: if C{event} or C{id} holds a line end (or C{id} a
        NUL), or C{retry} is negative.
    """

    data: str
    event: str | None = None
    id: str | None = None
    retry: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.data, str):
            raise TypeError(f"event data must be str, not {type(self.data).__name__}")
        for name in ("event", "id"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, str):
                raise TypeError(f"event {name} must be str, not {type(value).__name__}")
            if "\r" in value or "\n" in value:
                raise ValueError(f"event {name} {value!r} holds a line end")
        if self.id is not None and "\0" in self.id:
            # A client ignores an id with a NUL in it.
            raise ValueError(f"event id {self.id!r} holds a NUL")
        if self.retry is not None and (
            isinstance(self.retry, bool)
            or not isinstance(self.retry, int)
            or self.retry < 0
        ):
            raise ValueError(f"event retry {self.retry!r} is not milliseconds >= 0")

    def encode(self) -> bytes:
        """
        The event as UTF-8 C{text/event-stream} bytes, blank line included.

        >>> ServerSentEvent("a\\nb", id="7").encode()
        b'id: 7\\ndata: a\\ndata: b\\n\\n'
        """
        # One space after the colon: a client strips exactly one, so values
        # that start with a space arrive whole.
        lines = []
        if self.event is not None:
            lines.append("event: " + self.event)
        if self.id is not None:
            lines.append("id: " + self.id)
        if self.retry is not None:
            lines.append(f"retry: {self.retry}")
        lines.extend("data: " + line for line in _LINE_END.split(self.data))
        return ("\n".join(lines) + "\n\n").encode("utf-8")


def positive_seconds(name: str, value: float) -> float:
    """
    C{value} as a float of seconds, checked: C{name} says which setting
    in the error.

    @raise TypeError: if C{value} is not a number.
    @raise ValueError: if it is not finite and C{> 0}.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be seconds, not {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} {value!r} is not a number of seconds > 0")
    return float(value)


def stream_headers(request: IRequest) -> None:
    """
    Set the headers of a C{text/event-stream} answer on C{request}: not
    cached, and not buffered by a proxy (nginx's C{X-Accel-Buffering}).
    """
    request.setHeader(b"Content-Type", b"text/event-stream; charset=utf-8")
    request.setHeader(b"Cache-Control", b"no-cache")
    # nginx buffers proxied responses unless told not to.
    request.setHeader(b"X-Accel-Buffering", b"no")


@implementer(IPushProducer)
class PushStream:
    """
    A response body written a piece at a time by timers, for as long as
    the client stays: the request's push producer, so that while the
    transport's buffer is full nothing is written and no timer runs.

    Subclasses say how their timers stop (L{_unschedule}) and start again
    (L{_resumed}).

    Backpressure bounds how often a stream writes, not how much: a client
    that reads nothing is dropped once what the server holds for it unsent
    would pass C{max_unsent} bytes (L{too_much_unsent}).

    @ivar max_unsent: that bound in bytes, or C{None} for none.
    """

    max_unsent: int | None = DEFAULT_MAX_UNSENT

    def __init__(
        self,
        request: IRequest,
        clock: IReactorTime,
        on_close: Callable[[Any], None] | None,
    ) -> None:
        self.request = request
        self._clock = clock
        self._on_close = on_close
        self._paused = False
        self._closed = False

    def _produce(self) -> None:
        """
        Become the request's push producer.
        """
        cast("http.Request", self.request).registerProducer(self, True)
        # A producer registered while the transport is already paused is not
        # told (the channel's pauseProducing came before): ask.
        if transport_paused(self.request):
            self._paused = True

    def unsent(self) -> int:
        """
        How many bytes written to this stream the server holds unsent: its
        HTTP/2 stream's queue and its connection's buffer in Twisted (the
        kernel's socket buffer is not the server's memory).
        """
        channel = channel_of(self.request)
        return stream_queued(channel) + unsent_bytes(transport_of(channel))

    def too_much_unsent(self, more: int) -> int | None:
        """
        The bytes held unsent if writing C{more} would take them past
        C{max_unsent}, else C{None}.  A write to an empty buffer always
        fits: a client that reads is never dropped for one large write.
        """
        bound = self.max_unsent
        if bound is None:
            return None
        held = self.unsent()
        return held if held and held + more > bound else None

    @property
    def paused(self) -> bool:
        """
        Whether the transport asked for a pause and has not resumed yet.
        """
        return self._paused

    @property
    def closed(self) -> bool:
        """
        Whether the stream is over: ended, or its client gone.
        """
        return self._closed

    def _unschedule(self) -> None:
        """
        Cancel the timers: the stream is paused or over.
        """
        raise NotImplementedError

    def _resumed(self) -> None:
        """
        Start the timers again after a pause.
        """
        raise NotImplementedError

    # IPushProducer, called through the request's HTTPChannel

    def pauseProducing(self) -> None:
        """
        The transport's buffer is full: write nothing until resumed.
        """
        if not self._closed:
            self._paused = True
            self._unschedule()

    def resumeProducing(self) -> None:
        """
        The transport's buffer has room again: carry on.
        """
        if not self._closed and self._paused:
            self._paused = False
            self._resumed()

    def stopProducing(self) -> None:
        """
        The connection is gone: stop for good.
        """
        self._close()

    # Ending

    def _server_ended(self, ending: Ending, retry_after: int) -> None:
        # A stream has no answer to wait for: the server's end finishes it.
        self.end()

    def end(self) -> None:
        """
        Finish the response cleanly.  Does nothing if the stream is over.
        """
        self._close()
        finished, gone = request_state(self.request)
        if finished or gone:
            return
        request = cast("http.Request", self.request)
        request.unregisterProducer()
        request.finish()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._unschedule()
        if self._on_close is not None:
            self._on_close(self)


S = TypeVar("S", bound=PushStream)


class StreamsResource(WorkResource, Generic[S]):
    """
    A leaf that answers C{GET} with a stream (L{_stream}) and keeps the open
    ones; C{HEAD} gets the stream's headers alone at once; other methods
    C{405}.  C{GET} is admitted against the streams' own pool, the caps of
    the ledger's L{Limits} (C{max_streams}, C{max_streams_per_client}),
    never against C{max_pending}: a stream is not pending work.
    """

    allowed = (b"GET", b"HEAD")
    endless = True
    watched = True
    """
    Whether each stream's request is watched (and so counted, as a stream,
    by the ledger's limits through its watch); if not, the resource counts
    it in the limits itself while it is open.
    """

    def __init__(
        self,
        *,
        clock: IReactorTime | None = None,
        ledger: Ledger | None = None,
        policy: ConnectionPolicy = DEFAULT_POLICY,
        max_unsent: int | None = DEFAULT_MAX_UNSENT,
    ) -> None:
        """
        @param max_unsent: the most bytes the server holds unsent for one
            stream's client before it drops it (see L{PushStream}); C{None}:
            no bound.
        @raise ValueError: if C{max_unsent} is not C{None} nor a whole
            number >= 1.
        """
        super().__init__(clock=clock, ledger=ledger, policy=policy)
        self.max_unsent = _cap("max_unsent", max_unsent)
        # Clients dropped so far for leaving too much unsent.
        self.dropped_unsent = 0
        # The open ones, to end them all.
        self._streams: dict[int, S] = {}
        # For streams that are not watched, what the limits counted them as.
        self._counted: dict[int, str | None] = {}

    @property
    def streams(self) -> list[S]:
        """
        The streams open now, oldest first.
        """
        return list(self._streams.values())

    def end_all(self) -> int:
        """
        Finish every open stream cleanly, e.g. for a graceful shutdown; new
        requests still get new streams.

        @return: how many streams were ended.
        """
        streams = self.streams
        for stream in streams:
            stream.end()
        return len(streams)

    def _stream(self, request: IRequest) -> S:
        raise NotImplementedError

    def render(self, request: IRequest) -> bytes | int:
        if request.method == b"HEAD":
            # The headers alone: no stream, so no work to admit.
            stream_headers(request)
            return b""
        return super().render(request)

    def begin(self, request: IRequest) -> bytes | int:
        stream = self._stream(request)
        stream.max_unsent = self.max_unsent
        if not stream.closed:
            self._streams[id(stream)] = stream
            if not self.watched:
                self._counted[id(stream)] = self.ledger.limits.began(request, True)
        return NOT_DONE_YET

    def _forget(self, stream: S) -> None:
        if self._streams.pop(id(stream), None) is not None and not self.watched:
            self.ledger.limits.ended(self._counted.pop(id(stream)))
