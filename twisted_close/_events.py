"""
L{EventStreamResource}: a Server-Sent Events stream that stops when the
client leaves, waits while the client reads slowly, and reports the end::

    def prices(n: int, now: float) -> ServerSentEvent | None:
        quote = latest_quote()          # your own data; None: nothing new
        if quote is None:
            return None
        return ServerSentEvent(json.dumps(quote), event="price", id=str(n))

    root.putChild(b"events", EventStreamResource(prices, tick=1.0, clock=reactor))

A client that leaves is reported like any other interrupted request, e.g.
C{Connection interrupted: GET /events from 127.0.0.1:50112 after 3.02 s
while answering (client closed the connection; 3 events sent)}.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from ._ledger import Ledger
from ._policy import DEFAULT_POLICY, ConnectionPolicy
from ._stream import (
    DEFAULT_MAX_UNSENT,
    HEARTBEAT,
    PushStream,
    ServerSentEvent,
    StreamsResource,
    positive_seconds,
    stream_headers,
)
from ._text import printable
from ._twisted.request import abort_request
from ._watch import RequestWatch

__all__ = ["EventStream", "EventStreamResource", "StreamSource", "counter_events"]

log = Logger(namespace="twisted_close")


StreamSource = Callable[[int, float], ServerSentEvent | str | None]
"""
What a stream asks for an event at every tick: C{source(n, now)}, with
C{n} the tick's number (1, 2, 3...) in this stream and C{now} the clock's
time in seconds.  It returns a L{ServerSentEvent}, a C{str} (the data of an
event without type or id), or C{None} to send nothing at this tick.
"""


def counter_events(n: int, now: float) -> ServerSentEvent:
    """
    The default source of an L{EventStreamResource}: a counter and a
    timestamp as JSON.

    >>> counter_events(3, 1700000000.5).encode()
    b'id: 3\\ndata: {"n": 3, "time": 1700000000.5}\\n\\n'
    """
    return ServerSentEvent(json.dumps({"n": n, "time": now}), id=str(n))


def _encode(item: ServerSentEvent | str | None) -> bytes | None:
    if item is None:
        return None
    if isinstance(item, str):
        item = ServerSentEvent(item)
    if not isinstance(item, ServerSentEvent):
        raise TypeError(
            "an event source must return ServerSentEvent, str or None, "
            f"not {type(item).__name__}"
        )
    return item.encode()


class EventStream(PushStream):
    """
    One client's stream: an event every C{tick}, a heartbeat comment every
    C{heartbeat} seconds, until the client leaves or L{PushStream.end} is called.

    It is the request's push producer: while the transport's buffer is full
    (L{PushStream.pauseProducing}) no events are made and no heartbeats sent, so that
    nothing piles up for a client that does not read (unsent bytes are
    waiting already, and the kernel finds a vanished peer while it retries
    them); events due meanwhile are skipped, not made up for, and after a
    resume an overdue event or heartbeat goes at once.  L{PushStream.end} finishes the
    response cleanly (a graceful shutdown).  Made by L{EventStreamResource}.

    @ivar request: the request this stream answers.
    @ivar sent: how many events were written so far.
    @ivar ticks: how many times the source was asked for an event.
    @ivar watch: reports how the stream ended; made by the C{watch} given
        (a resource's L{WorkResource.watch}) with this stream as its work.
    """

    def __init__(
        self,
        request: IRequest,
        source: StreamSource,
        *,
        tick: float,
        heartbeat: float | None,
        clock: IReactorTime,
        watch: Callable[..., RequestWatch],
        on_close: Callable[[EventStream], None] | None = None,
    ) -> None:
        super().__init__(request, clock, on_close)
        self.sent = 0
        self.ticks = 0
        self._source = source
        self._tick = tick
        self._heartbeat = heartbeat
        now = clock.seconds()
        self._tick_due = now + tick
        self._heartbeat_due = now + (heartbeat or 0.0)
        self._tick_call: IDelayedCall | None = None
        self._heartbeat_call: IDelayedCall | None = None

        stream_headers(request)
        # An endless request (its resource's): a graceful stop ends it at once.
        self.watch = watch(
            request, self, detail=self._detail, on_server_end=self._server_ended
        )
        if self._closed:
            # The client had gone before the stream began.
            return
        self._produce()
        # Send the headers now: clients wait for them before they "open".
        request.write(b"")
        self._schedule()

    _unsent_drop = False

    def _detail(self) -> str:
        sent = f"{self.sent} event{'' if self.sent == 1 else 's'} sent"
        if self._unsent_drop:
            sent += f"; dropped: over {self.max_unsent} bytes unsent"
        return sent

    # Scheduling

    def _schedule(self) -> None:
        if self._closed or self._paused:
            return
        now = self._clock.seconds()
        if self._tick_call is None:
            delay = max(0.0, self._tick_due - now)
            self._tick_call = self._clock.callLater(delay, self._send_event)
        if self._heartbeat is not None and self._heartbeat_call is None:
            delay = max(0.0, self._heartbeat_due - now)
            self._heartbeat_call = self._clock.callLater(delay, self._send_heartbeat)

    def _resumed(self) -> None:
        self._schedule()

    def _unschedule(self) -> None:
        for call in (self._tick_call, self._heartbeat_call):
            if call is not None and call.active():
                call.cancel()
        self._tick_call = self._heartbeat_call = None

    def _next(self, due: float, interval: float) -> float:
        # Keep to the grid of due times, so that lateness does not add up;
        # skip what a pause or a busy reactor made us miss, do not burst.
        now = self._clock.seconds()
        due += interval
        if due <= now:
            due += interval * math.floor((now - due) / interval + 1)
            if due <= now:  # rounding
                due += interval
        return due

    def _send_event(self) -> None:
        self._tick_call = None
        self._tick_due = self._next(self._tick_due, self._tick)
        self.ticks += 1
        try:
            data = _encode(self._source(self.ticks, self._clock.seconds()))
        except Exception:
            log.failure(
                "Event source {source!r} failed on {path}; ending the stream",
                source=self._source,
                path=printable(self.request.path),
            )
            self.end()
            return
        # Schedule before writing: the write may pause us, or lose the client.
        self._schedule()
        if data is not None:
            if self.too_much_unsent(len(data)) is not None:
                # Backpressure pauses the ticks; a source whose events are
                # large passes the bound anyway: the client goes.
                self._unsent_drop = True
                abort_request(self.request)
                return
            self.sent += 1
            self.request.write(data)

    def _send_heartbeat(self) -> None:
        assert self._heartbeat is not None
        self._heartbeat_call = None
        self._heartbeat_due = self._next(self._heartbeat_due, self._heartbeat)
        self._schedule()
        # A peer gone without a FIN is found when a write to it fails.
        self.request.write(HEARTBEAT)

    def cancel(self) -> None:
        """
        Stop for good without writing anything: the client has gone.  The
        interruption is reported by L{watch} when the request hears of it.
        """
        self._close()


class EventStreamResource(StreamsResource[EventStream]):
    """
    Answer C{GET} with a C{text/event-stream}: an event from C{source} every
    C{tick} seconds and a comment every C{heartbeat} seconds, until the
    client leaves (reported and counted as interrupted, with the number of
    events sent) or the server calls L{StreamsResource.end_all} (counted as completed).

    C{HEAD} gets the headers alone at once; other methods C{405}.  The
    resource is a leaf: it answers for every path below it.  Example::

        events = EventStreamResource(tick=0.5, clock=reactor, ledger=ledger)
        root.putChild(b"events", events)
        ...
        events.end_all()        # graceful shutdown: finish every stream

    @ivar ledger: counts the streams: pending while open, then completed or
        interrupted.
    """

    def __init__(
        self,
        source: StreamSource | None = None,
        tick: float = 1.0,
        *,
        heartbeat: float | None = 15.0,
        clock: IReactorTime | None = None,
        ledger: Ledger | None = None,
        policy: ConnectionPolicy = DEFAULT_POLICY,
        max_unsent: int | None = DEFAULT_MAX_UNSENT,
    ) -> None:
        """
        @param source: asked for an event at every tick, see L{StreamSource};
            L{counter_events} by default.
        @param tick: seconds between events, C{> 0}.
        @param heartbeat: seconds between heartbeat comments, C{> 0}, or
            C{None} for none.
        @param clock: schedules the events; the global reactor by default.
        @param ledger: where streams are counted; a new one by default.
        @param policy: handed to each watch (see L{WorkResource}).
        @param max_unsent: the most bytes held unsent for a client that
            reads nothing: an event that would pass it drops the client
            (its connection aborted, counted and logged as ended by the
            server); C{None}: no bound.
        @raise ValueError: if C{tick} or C{heartbeat} is not C{> 0}.
        """
        self.tick = positive_seconds("tick", tick)
        self.heartbeat = (
            None if heartbeat is None else positive_seconds("heartbeat", heartbeat)
        )
        super().__init__(
            clock=clock, ledger=ledger, policy=policy, max_unsent=max_unsent
        )
        self.source: StreamSource = counter_events if source is None else source

    def _stream(self, request: IRequest) -> EventStream:
        return EventStream(
            request,
            self.source,
            tick=self.tick,
            heartbeat=self.heartbeat,
            clock=self.clock,
            watch=self.watch,
            on_close=self._forget,
        )
