"""
L{OutcomeStreamResource}: the ledger's outcome records and counters, pushed
to a browser as a C{text/event-stream} (the demo page's live view).

Events, each with JSON data:

  - C{counters}: the counters, as C{/stats} shows them.  Sent on connect,
    then whenever they changed, checked every C{every} seconds: requests
    that begin or are rejected make no L{Outcome}, so they are seen only so.
  - C{outcome}: one per request the ledger saw end:
    C{{"outcome": Outcome.as_dict(), "counter": "interrupted", "counters":
    {...}}}, C{counter} naming the counter it went to (C{completed},
    C{interrupted} or C{server_ended}), C{counters} all of them after it.
  - C{dropped}: C{{"dropped": n}}, after a pause: n outcomes were skipped
    for this client (see L{OutcomeStream}); the counters stay exact.

The stream reads the ledger and is not counted in it, like C{/stats}: a
page that watches the counters is not a request with work pending, and
closing it must not show up as an interrupted request in what it displays.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import cast

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.web import http
from twisted.web.iweb import IRequest

from .._ledger import CountsSource, Ledger
from .._outcome import Outcome, Rejection
from .._stream import (
    HEARTBEAT,
    PushStream,
    ServerSentEvent,
    StreamsResource,
    _seconds,
    _stream_headers,
)
from .._text import _printable
from .._twistedweb import request_state

__all__ = ["OutcomeStream", "OutcomeStreamResource"]

log = Logger(namespace="twisted_close")

RETRY_MS = 1000
"""How long a browser waits before it reconnects a dropped stream."""


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def _counter(outcome: Outcome) -> str:
    # Which of the counters this outcome went to, as Ledger.end counts it.
    ending = outcome.ending
    if not ending.interrupted:
        return "completed"
    return "server_ended" if ending.by_server else "interrupted"


class OutcomeStream(PushStream):
    """
    One client's stream of outcomes and counters, until the client leaves
    or L{PushStream.end} is called.  Made by L{OutcomeStreamResource}.

    Backpressure: the stream is the request's push producer.  While the
    transport's buffer is full (L{PushStream.pauseProducing}) nothing is written and
    nothing is queued: outcomes that happen meanwhile are dropped for this
    client and only counted, and the counters are not sent.  On resume the
    client gets one C{dropped} event saying how many it missed, then the
    counters as they are then.  So a page that does not read costs a fixed
    few bytes of state, however long it stalls and however busy the server;
    its counters are exact again as soon as it reads, and only its timeline
    has a gap, which it is told about.

    @ivar request: the request this stream answers.
    @ivar sent: how many C{outcome} events were written.
    @ivar dropped: how many outcomes were skipped while paused, in all.
    """

    def __init__(
        self,
        request: IRequest,
        *,
        ledger: Ledger,
        counts: CountsSource,
        clock: IReactorTime,
        every: float,
        heartbeat: float | None,
        on_close: Callable[[OutcomeStream], None] | None = None,
    ) -> None:
        super().__init__(request, clock, on_close)
        self.sent = 0
        self.dropped = 0
        self._missed = 0
        self._ledger = ledger
        self._counts = counts
        self._every = every
        self._heartbeat = heartbeat
        self._call: IDelayedCall | None = None
        # The counters the client has now; None: it has none yet.
        self._shown: dict[str, int] | None = None
        self._written = clock.seconds()

        _stream_headers(request)
        finished, gone = request_state(request)
        if finished or gone:
            # Nothing to watch for: notifyFinish() would never fire (#4899).
            self._closed = True
            return
        cast(http.Request, request).notifyFinish().addBoth(self._finished)
        self._produce()
        ledger.observe(self._observe)
        if self._paused:
            # The counters go out on resume; send the headers now.
            request.write(b"")
        else:
            self._send_counters()
        self._schedule(self._every)

    # Writing

    def _write(self, data: bytes) -> None:
        self._written = self._clock.seconds()
        self.request.write(data)

    def _send_counters(self) -> None:
        counters = self._counts.totals().snapshot()
        # The first event also sets how soon the browser reconnects.
        retry = RETRY_MS if self._shown is None else None
        self._shown = counters
        self._write(
            ServerSentEvent(_json(counters), event="counters", retry=retry).encode()
        )

    def _observe(self, outcome: Outcome) -> None:
        # Called from inside Ledger.end for some other request: never raise
        # into it, whatever happens to this client.
        if self._closed:
            return
        if self._paused:
            # Backpressure: drop, count, say so on resume (see the class).
            self._missed += 1
            self.dropped += 1
            return
        try:
            counters = self._counts.totals().snapshot()
            data = _json(
                {
                    "outcome": outcome.as_dict(),
                    "counter": _counter(outcome),
                    "counters": counters,
                }
            )
            self._shown = counters
            self.sent += 1
            self._write(ServerSentEvent(data, event="outcome").encode())
        except Exception:
            log.failure(
                "Outcome stream to {path} failed; ending it",
                path=_printable(self.request.path),
            )
            self.end()

    def _check(self) -> None:
        # Every `every` seconds while not paused: what the client missed,
        # the counters if they changed, or a heartbeat if it has been quiet.
        self._call = None
        self._schedule(self._every)
        try:
            if self._missed:
                missed, self._missed = self._missed, 0
                event = ServerSentEvent(_json({"dropped": missed}), event="dropped")
                self._write(event.encode())
            if self._closed or self._paused:
                return
            if self._counts.totals().snapshot() != self._shown:
                self._send_counters()
            elif (
                self._heartbeat is not None
                and self._clock.seconds() - self._written >= self._heartbeat
            ):
                # A peer gone without a FIN is found when a write fails.
                self._write(HEARTBEAT)
        except Exception:
            log.failure(
                "Outcome stream to {path} failed; ending it",
                path=_printable(self.request.path),
            )
            self.end()

    def _schedule(self, delay: float) -> None:
        if self._closed or self._paused or self._call is not None:
            return
        self._call = self._clock.callLater(delay, self._check)

    def _unschedule(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _resumed(self) -> None:
        # At once: say what was dropped, and the counters if they changed.
        self._schedule(0)

    # Ending

    def _finished(self, result: object) -> None:
        # The response finished, or the client left: nothing to report, the
        # stream is not counted.
        self._close()

    def _close(self) -> None:
        if not self._closed:
            self._ledger.unobserve(self._observe)
        super()._close()


class OutcomeStreamResource(StreamsResource[OutcomeStream]):
    """
    Answer C{GET} with the C{text/event-stream} of outcomes and counters
    described in the module's docstring.  C{HEAD} gets the headers alone;
    other methods C{405}.  Past C{max_streams} open streams, C{503}.

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
        heartbeat: float | None = 15.0,
        max_streams: int = 100,
    ) -> None:
        """
        @param every: seconds between checks of the counters, C{> 0}.
        @param heartbeat: seconds of quiet before a heartbeat comment,
            C{> 0}, or C{None} for none.
        @param max_streams: the most streams open at once.
        """
        super().__init__(clock=clock, ledger=ledger)
        self.counts: CountsSource = ledger if counts is None else counts
        self.every = _seconds("every", every)
        self.heartbeat = None if heartbeat is None else _seconds("heartbeat", heartbeat)
        self.max_streams = max_streams

    retry_after = 5
    # A reader, not work: not counted as a rejected request either.
    counts_refusals = False

    def admit(self, request: IRequest) -> Rejection | None:
        if len(self._streams) >= self.max_streams:
            return Rejection.TOO_MANY_STREAMS
        return super().admit(request)

    def _stream(self, request: IRequest) -> OutcomeStream:
        return OutcomeStream(
            request,
            ledger=self.ledger,
            counts=self.counts,
            clock=self.clock,
            every=self.every,
            heartbeat=self.heartbeat,
            on_close=self._forget,
        )
