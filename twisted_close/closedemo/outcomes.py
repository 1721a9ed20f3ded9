"""
L{OutcomeStreamResource}: the ledger's outcome records and counters, pushed
to a browser as a C{text/event-stream} (the demo page's live view).

Events, each with JSON data:

  - C{counters}: the counters, as C{/stats} shows them.  Sent on connect,
    then whenever they changed, checked every C{every} seconds: requests
    that begin or are rejected make no L{Outcome}, so they are seen only so.
  - C{outcomes}: every outcome since the last such event, at most one event
    per C{batch} seconds: C{{"outcomes": [{"outcome": Outcome.as_dict(),
    "counter": "interrupted"}, ...], "counters": {...}}}, C{counter} naming
    the counter each went to (C{completed}, C{interrupted} or
    C{server_ended}), C{counters} all of them after the last.
  - C{dropped}: C{{"dropped": n}}, after a pause: n outcomes were skipped
    for this client (see L{OutcomeStream}); the counters stay exact.

The cost does not grow with the request rate times the subscribers: each
outcome is turned into JSON once, and each batch into one event's bytes
once, written as they are to every stream.

The stream reads the ledger and is not counted in it, like C{/stats}: a
page that watches the counters is not a request with work pending, and
closing it must not show up as an interrupted request in what it displays.
Only a subscriber the server drops, because it read nothing for
C{heartbeat} x 4 seconds, is counted (L{Ending.STALLED}) and logged.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json.encoder import encode_basestring_ascii as _string
from typing import cast

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.web import http
from twisted.web.iweb import IRequest

from .. import HEARTBEAT, Ending, Ledger, Outcome, ServerSentEvent
from ..ledger import CountsSource
from ..streams import (
    DEFAULT_MAX_UNSENT,
    PushStream,
    StreamsResource,
    positive_seconds,
    stream_headers,
)
from ..web import abort_request, describe_client, printable, raw_text, request_state

__all__ = ["OutcomeStream", "OutcomeStreamResource"]

log = Logger(namespace="twisted_close")

RETRY_MS = 1000
"""How long a browser waits before it reconnects a dropped stream."""

STALL_HEARTBEATS = 4
"""Heartbeats a subscriber may read nothing for before it is dropped."""

FLUSH_BYTES = 64 * 1024
"""Outcomes waiting past this many bytes of JSON go out at once, not at
the end of the batch: an event's size is bounded, not only its rate."""


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


_ITEM = (
    '{"outcome":{"method":%s,"path":%s,"client":%s,"elapsed":%s,"ending":"%s",'
    '"reason":%s,"cancelled":%d,"detail":%s,"phase":%s,"delivery":%s,'
    '"unacknowledged":%d},"counter":"%s"}'
)


def _outcome_json(outcome: Outcome) -> str:
    # _json({"outcome": outcome.as_dict(), "counter": ...}) by hand: three
    # times faster, and every request's outcome goes through here.
    ending = outcome.ending
    return _ITEM % (
        _string(outcome.method),
        _string(outcome.path),
        _string(outcome.client),
        float.__repr__(float(outcome.elapsed)),
        ending.code,
        _string(str(ending.value)),
        outcome.cancelled,
        _string(outcome.detail),
        _string(outcome.phase),
        _string(outcome.delivery),
        outcome.unacknowledged,
        _counter(outcome),
    )


def _counter(outcome: Outcome) -> str:
    # Which of the counters this outcome went to, as Ledger.end counts it.
    ending = outcome.ending
    if not ending.interrupted:
        return "completed"
    return "server_ended" if ending.by_server else "interrupted"


class OutcomeStream(PushStream):
    """
    One client's stream of outcomes and counters, until the client leaves
    or L{PushStream.end} is called.  Made by L{OutcomeStreamResource}, which
    hands it the bytes to write (L{deliver}).

    Backpressure: the stream is the request's push producer.  While the
    transport's buffer is full (L{PushStream.pauseProducing}) nothing is written and
    nothing is queued: outcomes that happen meanwhile are dropped for this
    client and only counted, and the counters are not sent.  On resume the
    client gets one C{dropped} event saying how many it missed, then the
    counters as they are then.  So a page that does not read costs a fixed
    few bytes of state, however long it stalls and however busy the server;
    its counters are exact again as soon as it reads, and only its timeline
    has a gap, which it is told about.  One that stays paused for
    C{heartbeat} x 4 seconds (it read nothing of what was sent) is dropped.

    @ivar request: the request this stream answers.
    @ivar sent: how many outcomes were written.
    @ivar dropped: how many outcomes were skipped while paused, in all.
    @ivar paused_since: when the current pause began, or C{None}.
    """

    def __init__(
        self,
        request: IRequest,
        *,
        counts: CountsSource,
        clock: IReactorTime,
        on_close: Callable[[OutcomeStream], None] | None = None,
    ) -> None:
        super().__init__(request, clock, on_close)
        self.sent = 0
        self.dropped = 0
        self.paused_since: float | None = None
        self._missed = 0
        self._counts = counts
        self._call: IDelayedCall | None = None
        # The counters the client has now; None: it has none yet.
        self.shown: dict[str, int] | None = None
        self.started = self.written = clock.seconds()

        stream_headers(request)
        finished, gone = request_state(request)
        if finished or gone:
            # Nothing to watch for: notifyFinish() would never fire (#4899).
            self._closed = True
            return
        cast("http.Request", request).notifyFinish().addBoth(self._finished)
        self._produce()
        if self._paused:
            self.paused_since = self.started
            # The counters go out on resume; send the headers now.
            request.write(b"")
        else:
            self.send_counters(self._counts.totals().snapshot())

    # Writing

    def _write(self, data: bytes) -> None:
        self.written = self._clock.seconds()
        self.request.write(data)

    def _failed(self) -> None:
        log.failure(
            "Outcome stream to {path} failed; ending it",
            path=printable(self.request.path),
        )
        self.end()

    def send_counters(
        self, counters: dict[str, int], data: bytes | None = None
    ) -> None:
        """
        Write C{counters} (encoded as C{data} if given), unless paused.
        """
        if self._closed or self._paused:
            return
        if data is None or self.shown is None:
            # The first event also sets how soon the browser reconnects.
            retry = RETRY_MS if self.shown is None else None
            data = ServerSentEvent(
                _json(counters), event="counters", retry=retry
            ).encode()
        self.shown = counters
        try:
            self._write(data)
        except Exception:
            self._failed()

    def deliver(self, data: bytes, n: int, counters: dict[str, int]) -> None:
        """
        Write the C{outcomes} event C{data}, which holds C{n} outcomes and
        the C{counters} after them; while paused, count them as dropped.
        """
        if self._closed:
            return
        if self._paused:
            # Backpressure: drop, count, say so on resume (see the class).
            self._missed += n
            self.dropped += n
            return
        if self.shown is None:
            # Its first event must be the counters (with the retry time).
            self.send_counters(counters)
        self.shown = counters
        self.sent += n
        try:
            self._write(data)
        except Exception:
            self._failed()

    def heartbeat(self) -> None:
        """
        Write a heartbeat comment: a peer gone without a FIN is found when
        a write to it fails.
        """
        if not (self._closed or self._paused):
            try:
                self._write(HEARTBEAT)
            except Exception:
                self._failed()

    def _catch_up(self) -> None:
        # After a pause: what the client missed, then the counters.
        self._call = None
        if self._missed:
            missed, self._missed = self._missed, 0
            event = ServerSentEvent(_json({"dropped": missed}), event="dropped")
            try:
                self._write(event.encode())
            except Exception:
                self._failed()
                return
        counters = self._counts.totals().snapshot()
        if counters != self.shown:
            self.send_counters(counters)

    def _unschedule(self) -> None:
        if self.paused_since is None and self._paused:
            self.paused_since = self._clock.seconds()
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _resumed(self) -> None:
        self.paused_since = None
        if self._call is None:
            self._call = self._clock.callLater(0, self._catch_up)

    # Ending

    def drop(
        self, ledger: Ledger, stalled: float = 0.0, *, unsent: int | None = None
    ) -> None:
        """
        Drop the client: it has read nothing for C{stalled} seconds, or
        left C{unsent} bytes unsent, past the bound.  Its connection (its
        HTTP/2 stream) is aborted, and the drop counted in C{ledger} and
        logged.
        """
        if self._closed:
            return
        request = self.request
        now = self._clock.seconds()
        outcome = Outcome(
            method=raw_text(request.method),
            path=raw_text(request.path),
            client=describe_client(request),
            elapsed=now - self.started,
            ending=Ending.STALLED,
            detail=(
                f"read nothing for {stalled:.0f} s"
                if unsent is None
                else f"{unsent} bytes unsent, over {self.max_unsent}"
            )
            + f"; {self.sent} outcomes sent",
            phase="answering",
        )
        self._close()
        if not abort_request(request):
            cast("http.Request", request).loseConnection()
        ledger.record(outcome)

    def _finished(self, result: object) -> None:
        # The response finished, or the client left: nothing to report, the
        # stream is not counted.
        self._close()


class OutcomeStreamResource(StreamsResource[OutcomeStream]):
    """
    Answer C{GET} with the C{text/event-stream} of outcomes and counters
    described in the module's docstring.  C{HEAD} gets the headers alone;
    other methods C{405}.  Admitted against the ledger's stream caps (see
    L{twisted_close.Limits}): past them, C{503}, counted as rejected.

    @ivar ledger: whose outcomes are sent; the streams are not counted in it.
    @ivar counts: whose counters are sent: the ledger, or what C{/stats}
        shows (the shared counters of several workers).
    """

    def __init__(
        self,
        ledger: Ledger,
        *,
        counts: CountsSource | None = None,
        clock: IReactorTime | None = None,
        every: float = 0.25,
        batch: float = 0.1,
        heartbeat: float | None = 15.0,
        max_unsent: int | None = DEFAULT_MAX_UNSENT,
    ) -> None:
        """
        @param every: seconds between checks of the counters, C{> 0}.
        @param batch: the fewest seconds between two C{outcomes} events,
            C{> 0}.
        @param heartbeat: seconds of quiet before a heartbeat comment,
            C{> 0}, or C{None} for none; a subscriber that reads nothing
            for 4 times as long is dropped.
        @param max_unsent: the most bytes held unsent for one subscriber:
            one that an event would take past it is dropped (see
            L{twisted_close.streams.PushStream}); C{None}: no bound.
        """
        super().__init__(clock=clock, ledger=ledger, max_unsent=max_unsent)
        self.counts: CountsSource = ledger if counts is None else counts
        self.every = positive_seconds("every", every)
        self.batch = positive_seconds("batch", batch)
        self.heartbeat = (
            None if heartbeat is None else positive_seconds("heartbeat", heartbeat)
        )
        # Outcomes as JSON, waiting for the next batch.
        self._waiting: list[str] = []
        self._waiting_bytes = 0
        self._flush_call: IDelayedCall | None = None
        self._check_call: IDelayedCall | None = None
        self._flushed = float("-inf")

    retry_after = 5
    # A subscriber is not a request with work pending: not in the ledger.
    watched = False

    def _stream(self, request: IRequest) -> OutcomeStream:
        return OutcomeStream(
            request, counts=self.counts, clock=self.clock, on_close=self._forget
        )

    def begin(self, request: IRequest) -> bytes | int:
        if not self._streams:
            self.ledger.observe(self._observe)
        answer = super().begin(request)
        if self._streams:
            if self._check_call is None:
                self._check_call = self.clock.callLater(self.every, self._check)
        else:
            self._idle()
        return answer

    def _forget(self, stream: OutcomeStream) -> None:
        super()._forget(stream)
        if not self._streams:
            self._idle()

    def _idle(self) -> None:
        # No stream left: observe nothing, schedule nothing.
        self.ledger.unobserve(self._observe)
        self._waiting.clear()
        self._waiting_bytes = 0
        for call in (self._flush_call, self._check_call):
            if call is not None and call.active():
                call.cancel()
        self._flush_call = self._check_call = None

    def _observe(self, outcome: Outcome) -> None:
        # Called from inside Ledger.end for some other request: never raise
        # into it.  Serialised once, whatever the number of streams.
        try:
            item = _outcome_json(outcome)
        except Exception:
            log.failure("Outcome {outcome!r} could not be sent", outcome=outcome)
            return
        self._waiting.append(item)
        self._waiting_bytes += len(item)
        if self._flush_call is None:
            wait = max(0.0, self._flushed + self.batch - self.clock.seconds())
            if self._waiting_bytes >= FLUSH_BYTES:
                wait = 0.0
            self._flush_call = self.clock.callLater(wait, self._flush)
        elif self._waiting_bytes >= FLUSH_BYTES and self._flush_call.active():
            # Not from here: this runs inside another request's end.
            self._flush_call.reset(0)

    def _flush(self) -> None:
        self._flush_call = None
        self._flushed = self.clock.seconds()
        items, self._waiting = self._waiting, []
        self._waiting_bytes = 0
        if not items:
            return
        counters = self.counts.totals().snapshot()
        tail = ',"counters":' + _json(counters) + "}"
        # Events of about FLUSH_BYTES at most: what one write to a
        # subscriber can add to what the server holds for it is bounded.
        start = size = 0
        for end, item in enumerate(items, 1):
            size += len(item)
            if size >= FLUSH_BYTES or end == len(items):
                self._send(items[start:end], tail, counters)
                start, size = end, 0

    def _send(self, items: list[str], tail: str, counters: dict[str, int]) -> None:
        data = ServerSentEvent(
            '{"outcomes":[' + ",".join(items) + "]" + tail, event="outcomes"
        ).encode()
        for stream in self.streams:
            if not stream.paused and (unsent := stream.too_much_unsent(len(data))):
                # Backpressure bounds how often it is written, not how much.
                self.dropped_unsent += 1
                stream.drop(self.ledger, unsent=unsent)
                continue
            stream.deliver(data, len(items), counters)

    def _check(self) -> None:
        # Every `every` seconds while there are streams: the counters to
        # those whose changed, heartbeats to the quiet, and drop the stalled.
        self._check_call = self.clock.callLater(self.every, self._check)
        counters = self.counts.totals().snapshot()
        event: bytes | None = None
        now = self.clock.seconds()
        heartbeat = self.heartbeat
        for stream in self.streams:
            if stream.paused:
                since = stream.paused_since
                if (
                    heartbeat is not None
                    and since is not None
                    and now - since >= heartbeat * STALL_HEARTBEATS
                ):
                    stream.drop(self.ledger, now - since)
                continue
            if stream.shown != counters:
                if event is None:
                    event = ServerSentEvent(_json(counters), event="counters").encode()
                stream.send_counters(counters, event)
            elif heartbeat is not None and now - stream.written >= heartbeat:
                stream.heartbeat()
