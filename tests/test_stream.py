"""
L{EventStreamResource} through a real C{Site}/C{HTTPChannel} in memory.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http import HTTPChannel
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from twisted_close import (
    HEARTBEAT,
    Ending,
    EventStream,
    EventStreamResource,
    Ledger,
    Outcome,
    ServerSentEvent,
    StreamSource,
    counter_events,
)
from twisted_close.testing import Connection, InMemoryServer, outcome_events

from .helpers import channel


def stream_server(
    source: StreamSource | None = None,
    tick: float = 1.0,
    heartbeat: float | None = 15.0,
) -> tuple[InMemoryServer, EventStreamResource]:
    clock = Clock()
    resource = EventStreamResource(
        source, tick, heartbeat=heartbeat, clock=clock, ledger=Ledger()
    )
    return InMemoryServer(resource, clock=clock), resource


def stream_calls(server: InMemoryServer) -> list[tuple[str, float]]:
    """
    The streams' pending calls as (name, when); the channels' own idle
    timeouts belong to Twisted and are left out.
    """
    calls = []
    for call in server.clock.getDelayedCalls():
        func = getattr(call, "func", None)
        if isinstance(getattr(func, "__self__", None), EventStream):
            calls.append((getattr(func, "__name__", "?"), call.getTime()))
    return sorted(calls, key=lambda c: (c[1], c[0]))


def split_response(client: Connection) -> tuple[bytes, bytes]:
    """
    The head and the de-chunked body received so far (a stream never ends).
    """
    head = client.head
    assert head, client.transport.value()
    return head, client.body_so_far


def blocks(client: Connection) -> list[bytes]:
    """
    The complete events and comments received so far, blank line dropped.
    """
    _, body = split_response(client)
    *complete, _partial = body.split(b"\n\n")
    return complete


def events(client: Connection) -> list[bytes]:
    return [b for b in blocks(client) if not b.startswith(b":")]


interruptions = outcome_events


class HeaderTests(SynchronousTestCase):
    def test_headers_come_at_once(self) -> None:
        server, _ = stream_server()
        client = server.get("/events")
        head, body = split_response(client)
        lines = head.split(b"\r\n")
        self.assertEqual(lines[0], b"HTTP/1.1 200 OK")
        self.assertIn(b"Content-Type: text/event-stream; charset=utf-8", lines)
        self.assertIn(b"Cache-Control: no-cache", lines)
        self.assertIn(b"X-Accel-Buffering: no", lines)
        self.assertIn(b"Transfer-Encoding: chunked", lines)
        self.assertEqual(body, b"")

    def test_head_gets_headers_only_and_finishes(self) -> None:
        server, resource = stream_server()
        client = server.connect().request("/events", "HEAD")
        [response] = client.responses
        self.assertEqual(response.status, 200)
        self.assertEqual(
            response.header("content-type"), "text/event-stream; charset=utf-8"
        )
        self.assertEqual(response.header("cache-control"), "no-cache")
        self.assertEqual(response.header("x-accel-buffering"), "no")
        self.assertIsNone(response.header("content-length"))
        self.assertEqual(response.body, b"")
        self.assertEqual(stream_calls(server), [])
        self.assertEqual(resource.streams, [])
        self.assertEqual(resource.ledger.pending, 0)

    def test_other_methods_get_405_with_allow(self) -> None:
        server, resource = stream_server()
        for method in ["POST", "PUT", "DELETE", "OPTIONS", "BREW"]:
            with self.subTest(method=method):
                response = server.get("/events", method).response
                assert response is not None
                self.assertEqual(response.status, 405)
                self.assertEqual(response.header("allow"), "GET, HEAD")
                self.assertIn(method.encode(), response.body)
        self.assertEqual(stream_calls(server), [])
        self.assertEqual(resource.ledger.pending, 0)

    def test_bad_intervals_are_refused(self) -> None:
        for tick, heartbeat in [(0, 1), (-1, 1), (float("nan"), 1), (1, 0)]:
            with self.subTest(tick=tick, heartbeat=heartbeat):
                with self.assertRaises(ValueError):
                    EventStreamResource(tick=tick, heartbeat=heartbeat, clock=Clock())


class EventTests(SynchronousTestCase):
    def test_an_event_at_each_tick_with_counter_and_time(self) -> None:
        server, resource = stream_server(tick=1.0)
        client = server.get("/events")
        self.assertEqual(
            stream_calls(server), [("_send_event", 1.0), ("_send_heartbeat", 15.0)]
        )
        server.advance(0.99)
        self.assertEqual(events(client), [])
        server.advance(0.01)
        self.assertEqual(events(client), [b'id: 1\ndata: {"n": 1, "time": 1.0}'])
        server.advance(1)
        server.advance(1)
        received = events(client)
        self.assertEqual(len(received), 3)
        for n, event in enumerate(received, 1):
            id_line, data_line = event.split(b"\n")
            self.assertEqual(id_line, b"id: %d" % (n,))
            self.assertTrue(data_line.startswith(b"data: "))
            self.assertEqual(json.loads(data_line[6:]), {"n": n, "time": float(n)})
        [stream] = resource.streams
        self.assertEqual((stream.sent, stream.ticks), (3, 3))
        self.assertEqual(resource.ledger.pending, 1)

    def test_heartbeat_at_its_interval(self) -> None:
        server, _ = stream_server(tick=10.0, heartbeat=4.0)
        client = server.get("/events")
        server.advance(3.9)
        self.assertEqual(blocks(client), [])
        server.advance(0.1)
        self.assertEqual(blocks(client), [HEARTBEAT.rstrip(b"\n")])
        for _ in range(8):
            server.advance(1)
        # Heartbeats at 4, 8 and 12; the event at 10.
        kinds = [b[:1] for b in blocks(client)]
        self.assertEqual(kinds, [b":", b":", b"i", b":"])
        self.assertTrue(split_response(client)[1].startswith(b": heartbeat\n\n"))

    def test_no_heartbeat_when_none(self) -> None:
        server, _ = stream_server(tick=1.0, heartbeat=None)
        client = server.get("/events")
        self.assertEqual(stream_calls(server), [("_send_event", 1.0)])
        server.advance(100)
        self.assertEqual(len(events(client)), 1)  # Clock runs a due call once.
        for _ in range(30):
            server.advance(1)
        self.assertEqual([b for b in blocks(client) if b.startswith(b":")], [])

    def test_a_late_clock_skips_missed_ticks_without_a_burst(self) -> None:
        server, _ = stream_server(tick=1.0, heartbeat=None)
        client = server.get("/events")
        server.advance(5.5)
        self.assertEqual(len(events(client)), 1)
        # Back on the grid of ticks at the first one still to come.
        self.assertEqual(stream_calls(server), [("_send_event", 6.0)])

    def test_user_source_with_multiline_data(self) -> None:
        asked: list[tuple[int, float]] = []

        def source(n: int, now: float) -> ServerSentEvent | str | None:
            asked.append((n, now))
            if n == 1:
                return "line one\nline two\r\nline three\rend"
            if n == 2:
                return None
            if n == 3:
                return ServerSentEvent(
                    "x\n\nevent: fake\n id: 99", event="tick", id="3", retry=2500
                )
            return " leading space\u2028not a line end\n"

        server, resource = stream_server(source, tick=0.5, heartbeat=None)
        client = server.get("/")
        for _ in range(4):
            server.advance(0.5)
        self.assertEqual(asked, [(1, 0.5), (2, 1.0), (3, 1.5), (4, 2.0)])
        self.assertEqual(
            events(client),
            [
                b"data: line one\ndata: line two\ndata: line three\ndata: end",
                b"event: tick\nid: 3\nretry: 2500\n"
                b"data: x\ndata: \ndata: event: fake\ndata:  id: 99",
                "data:  leading space\u2028not a line end\ndata: ".encode(),
            ],
        )
        [stream] = resource.streams
        self.assertEqual((stream.sent, stream.ticks), (3, 4))

    def test_event_fields_cannot_inject_lines(self) -> None:
        bad: list[dict[str, Any]] = [
            {"event": "a\nb"},
            {"event": "a\r"},
            {"id": "1\r\nevent: x"},
            {"id": "1\0"},
            {"retry": -1},
            {"retry": 1.5},
        ]
        for kwargs in bad:
            with self.subTest(**kwargs):
                with self.assertRaises(ValueError):
                    ServerSentEvent("data", **kwargs)
        with self.assertRaises(TypeError):
            ServerSentEvent(b"bytes")  # type: ignore[arg-type]

    def test_demo_events(self) -> None:
        self.assertEqual(
            counter_events(3, 12.5).encode(), b'id: 3\ndata: {"n": 3, "time": 12.5}\n\n'
        )

    def test_a_failing_source_ends_the_stream_and_is_logged(self) -> None:
        def source(n: int, now: float) -> str:
            if n == 2:
                raise KeyError("boom")
            return "ok"

        server, resource = stream_server(source, tick=1.0)
        with capturedLogs() as logged:
            client = server.get("/events")
            server.advance(1)
            server.advance(1)
        failures = [e for e in logged if "log_failure" in e]
        self.assertEqual(len(failures), 1)
        self.assertIn("ending the stream", formatEvent(failures[0]))
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)
        response = client.response
        assert response is not None
        self.assertEqual(response.body, b"data: ok\n\n")
        self.assertEqual(stream_calls(server), [])
        self.assertEqual(resource.ledger.completed, 1)
        self.assertEqual(resource.ledger.pending, 0)


class DisconnectTests(SynchronousTestCase):
    def test_client_leaves_after_three_events(self) -> None:
        server, resource = stream_server(tick=1.0, heartbeat=2.5)
        with capturedLogs() as logged:
            client = server.connect(port=53001).request("/events")
            for _ in range(3):
                server.advance(1)
            self.assertEqual(len(events(client)), 3)
            server.advance(0.25)
            client.close()
        self.assertEqual(stream_calls(server), [])
        self.assertEqual(resource.streams, [])
        [event] = interruptions(logged)
        self.assertEqual(
            formatEvent(event),
            "Connection interrupted: GET /events from 127.0.0.1:53001 after 3.25 s "
            "while answering (client closed the connection; 3 events sent)",
        )
        outcome = event["outcome"]
        assert isinstance(outcome, Outcome)
        self.assertIs(outcome.ending, Ending.CLIENT_CLOSED)
        self.assertEqual(outcome.detail, "3 events sent")
        self.assertEqual(outcome.cancelled, 1)
        self.assertEqual(
            resource.ledger.snapshot(),
            {
                "pending": 0,
                "completed": 0,
                "interrupted": 1,
                "rejected": 0,
                "server_ended": 0,
            },
        )
        written = client.transport.value()
        server.advance(60)
        self.assertEqual(client.transport.value(), written)

    def test_the_channel_idle_timeout_is_told_apart(self) -> None:
        # HTTPChannel suspends its idle timeout while a request is handled
        # (so a stream has none: only a failing write finds a dead peer) and
        # sets it again once the response is finished.
        server, resource = stream_server()
        server.get("/events")
        server.get("/events").reset()
        server.advance(1)
        self.assertEqual(
            [name for name, _ in stream_calls(server)],
            ["_send_event", "_send_heartbeat"],
        )
        self.assertEqual(len(server.clock.getDelayedCalls()), 2)
        resource.end_all()
        self.assertEqual(stream_calls(server), [])
        [idle] = server.clock.getDelayedCalls()
        func = getattr(idle, "func", None)
        self.assertIsInstance(getattr(func, "__self__", None), HTTPChannel)

    def test_reset_is_reported_as_a_reset(self) -> None:
        server, resource = stream_server()
        with capturedLogs() as logged:
            client = server.get("/events")
            server.advance(1)
            client.reset()
        [event] = interruptions(logged)
        self.assertIs(event["outcome"].ending, Ending.CLIENT_RESET)
        self.assertEqual(event["outcome"].detail, "1 event sent")
        self.assertEqual(resource.ledger.interruptions[Ending.CLIENT_RESET], 1)

    def test_a_client_already_gone_gets_no_stream(self) -> None:
        # E.g. a wrapper that renders later, after the connection was lost.
        clock = Clock()
        resource = EventStreamResource(clock=clock, ledger=Ledger())
        request: Any = DummyRequest([b"events"])
        request.path = b"/events"
        request._disconnected = True
        registered: list[object] = []
        request.registerProducer = lambda p, s: registered.append(p)
        self.assertEqual(resource.render(request), NOT_DONE_YET)
        self.assertEqual(resource.streams, [])
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual(registered, [])
        self.assertEqual(request.written, [])
        self.assertEqual(resource.ledger.interruptions[Ending.ALREADY_GONE], 1)
        self.assertEqual(resource.ledger.pending, 0)

    def test_stop_producing_stops_the_stream(self) -> None:
        # A transport tells its producer first, then the protocol.
        server, resource = stream_server()
        with capturedLogs() as logged:
            client = server.get("/events")
            server.advance(1)
            channel(client).stopProducing()
            self.assertEqual(stream_calls(server), [])
            written = client.transport.value()
            server.advance(10)
            self.assertEqual(client.transport.value(), written)
            client.close()
        [event] = interruptions(logged)
        self.assertEqual(event["outcome"].detail, "1 event sent")
        self.assertEqual(resource.ledger.interrupted, 1)


class BackpressureTests(SynchronousTestCase):
    def test_pause_stops_events_and_resume_carries_on(self) -> None:
        server, resource = stream_server(tick=1.0, heartbeat=2.0)
        client = server.get("/events")
        server.advance(1)
        [stream] = resource.streams
        # StringTransport's registered producer is the HTTPChannel, which
        # passes the transport's pause on to the request's producer.
        self.assertIs(client.transport.streaming, True)
        channel(client).pauseProducing()
        self.assertTrue(stream.paused)
        self.assertEqual(stream_calls(server), [])
        written = client.transport.value()
        for _ in range(10):
            server.advance(1)
        self.assertEqual(client.transport.value(), written)
        self.assertEqual((stream.sent, stream.ticks), (1, 1))

        channel(client).resumeProducing()
        self.assertFalse(stream.paused)
        # Overdue: one event and one heartbeat at once, the missed skipped.
        self.assertEqual(
            stream_calls(server), [("_send_event", 11.0), ("_send_heartbeat", 11.0)]
        )
        server.advance(0)
        self.assertEqual(stream.sent, 2)
        server.advance(1)
        self.assertEqual(stream.sent, 3)
        ids = [e.split(b"\n")[0] for e in events(client)]
        self.assertEqual(ids, [b"id: 1", b"id: 2", b"id: 3"])

    def test_pause_through_the_request_producer(self) -> None:
        server, resource = stream_server(tick=1.0)
        server.get("/events")
        [stream] = resource.streams
        stream.pauseProducing()
        stream.pauseProducing()
        server.advance(5)
        self.assertEqual(stream.sent, 0)
        stream.resumeProducing()
        stream.resumeProducing()
        self.assertEqual(len(stream_calls(server)), 2)
        server.advance(0)
        self.assertEqual(stream.sent, 1)

    def test_a_stream_that_begins_paused_waits(self) -> None:
        # The channel was paused before the request: Twisted does not pass
        # that pause on to a producer registered afterwards.
        server, resource = stream_server(tick=1.0)
        client = server.connect()
        channel(client).pauseProducing()
        client.request("/events")
        [stream] = resource.streams
        self.assertTrue(stream.paused)
        server.advance(5)
        self.assertEqual(stream.sent, 0)
        channel(client).resumeProducing()
        server.advance(0)
        self.assertEqual(stream.sent, 1)

    def test_client_leaves_while_paused(self) -> None:
        server, resource = stream_server(tick=1.0)
        with capturedLogs() as logged:
            client = server.get("/events")
            server.advance(1)
            server.advance(1)
            channel(client).pauseProducing()
            server.advance(5)
            client.reset()
        [event] = interruptions(logged)
        self.assertEqual(event["outcome"].detail, "2 events sent")
        self.assertEqual(stream_calls(server), [])
        self.assertEqual(resource.ledger.pending, 0)


class EndTests(SynchronousTestCase):
    def test_server_ends_the_stream_cleanly(self) -> None:
        server, resource = stream_server(tick=1.0)
        with capturedLogs() as logged:
            client = server.get("/events")
            server.advance(1)
            server.advance(1)
            [stream] = resource.streams
            stream.end()
            stream.end()
        self.assertTrue(stream.closed)
        self.assertEqual(stream_calls(server), [])
        self.assertEqual(interruptions(logged), [])
        self.assertEqual([e for e in logged if "log_failure" in e], [])
        response = client.response
        assert response is not None
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body.count(b"\n\n"), 2)
        self.assertFalse(client.closed_by_server)  # keep-alive
        outcome = stream.watch.outcome
        assert outcome is not None
        self.assertIs(outcome.ending, Ending.COMPLETED)
        self.assertEqual(outcome.detail, "2 events sent")
        self.assertEqual(
            resource.ledger.snapshot(),
            {
                "pending": 0,
                "completed": 1,
                "interrupted": 0,
                "rejected": 0,
                "server_ended": 0,
            },
        )
        # The connection can carry another request.
        client.request("/events", "HEAD")
        self.assertEqual(len(client.responses), 2)

    def test_end_all(self) -> None:
        server, resource = stream_server(tick=1.0)
        clients = [server.get("/events") for _ in range(3)]
        server.advance(1)
        clients[0].close()
        self.assertEqual(len(resource.streams), 2)
        self.assertEqual(resource.end_all(), 2)
        self.assertEqual(resource.streams, [])
        self.assertEqual(resource.end_all(), 0)
        self.assertEqual(stream_calls(server), [])
        for client in clients[1:]:
            self.assertIsNotNone(client.response)
        self.assertEqual(
            resource.ledger.snapshot(),
            {
                "pending": 0,
                "completed": 2,
                "interrupted": 1,
                "rejected": 0,
                "server_ended": 0,
            },
        )

    def test_end_while_paused(self) -> None:
        server, resource = stream_server(tick=1.0)
        client = server.get("/events")
        server.advance(1)
        channel(client).pauseProducing()
        resource.end_all()
        self.assertIsNotNone(client.response)
        channel(client).resumeProducing()
        server.advance(5)
        self.assertEqual(resource.ledger.completed, 1)
        self.assertEqual(stream_calls(server), [])

    def test_http_10_stream_ends_by_closing(self) -> None:
        server, resource = stream_server(tick=1.0)
        client = server.connect()
        client.send(b"GET /events HTTP/1.0\r\n\r\n", b"GET")
        server.advance(1)
        self.assertNotIn(b"chunked", client.transport.value())
        self.assertTrue(client.transport.value().endswith(b"\n\n"))
        resource.end_all()
        server.advance(0)
        self.assertTrue(client.closed_by_server)
        self.assertEqual(resource.ledger.completed, 1)


class UnsentBoundTests(SynchronousTestCase):
    def test_an_event_past_the_bound_drops_the_client(self) -> None:
        clock = Clock()
        ledger = Ledger(clock)
        big = "x" * 400
        resource = EventStreamResource(
            lambda n, now: ServerSentEvent(big),
            clock=clock,
            ledger=ledger,
            max_unsent=1000,
        )
        server = InMemoryServer(resource, clock=clock)
        client = server.get("/")
        server.advance(1)
        self.assertFalse(client.closed_by_server)
        # Twisted's buffer holds 700 bytes the client has not read.
        untyped: Any = client.transport
        untyped.dataBuffer, untyped.offset, untyped._tempDataLen = b"x" * 700, 0, 0
        outcomes: list[Outcome] = []
        ledger.observe(outcomes.append)
        server.advance(1)
        self.assertTrue(client.closed_by_server)
        [outcome] = outcomes
        self.assertTrue(outcome.ending.by_server)
        self.assertEqual(
            outcome.detail, "1 event sent; dropped: over 1000 bytes unsent"
        )

    def test_a_bad_bound_is_a_value_error(self) -> None:
        for bad in (0, -1, 1.5, True):
            with self.assertRaises(ValueError):
                EventStreamResource(clock=Clock(), max_unsent=bad)  # type: ignore[arg-type]
