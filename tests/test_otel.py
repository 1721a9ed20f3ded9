"""
L{twisted_close.otel} through two real servers on loopback: A relays to B
(C{examples/calling_a_service.py}'s L{TreqRelay}), both traced into the
SDK's in-memory exporter.  A client that leaves A interrupts A and, through
A's cancelled call, B: both spans end with their outcome, in one trace.
"""

from __future__ import annotations

import dataclasses
import runpy
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from twisted_close import DelayedResource, Ending, Ledger, Outcome
from twisted_close.otel import RequestTracing, outcome_attributes
from twisted_close.testing import InMemoryServer

from .realtcp import clock, tcp, twisted_test, wait_for

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "calling_a_service.py"


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


@twisted_test
async def test_a_chains_interruptions_share_one_trace() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    relay_class = runpy.run_path(str(EXAMPLE))["TreqRelay"]

    b_ledger, a_ledger = Ledger(clock), Ledger(clock)
    b_root = Resource()
    slow = DelayedResource("done", delay=10.0, ledger=b_ledger, clock=clock)
    b_root.putChild(b"slow", RequestTracing(b_ledger, provider).resource(slow))
    b_port = tcp.listenTCP(0, Site(b_root), interface="127.0.0.1")  # type: ignore[arg-type]
    b_url = f"http://127.0.0.1:{b_port.getHost().port}"  # type: ignore[attr-defined]
    relay = relay_class(b_url, clock=clock, ledger=a_ledger)
    a_site = Site(RequestTracing(a_ledger, provider).resource(relay))
    a_port = tcp.listenTCP(0, a_site, interface="127.0.0.1")  # type: ignore[arg-type]
    client = Protocol()
    try:
        endpoint = TCP4ClientEndpoint(tcp, "127.0.0.1", a_port.getHost().port)  # type: ignore[attr-defined]
        await connectProtocol(endpoint, client)
        assert client.transport is not None
        client.transport.write(b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n")
        await wait_for(lambda: b_ledger.pending == 1, "A to wait on B")
        client.transport.loseConnection()
        await wait_for(lambda: len(exporter.get_finished_spans()) == 2, "two spans")
    finally:
        if client.transport is not None:
            client.transport.loseConnection()
        relay.pool.closeCachedConnections()
        for port in (a_port, b_port):
            stopped = port.stopListening()
            if stopped is not None:
                await stopped

    # A's span began first: B's began when A's call reached it.
    a_span, b_span = sorted(
        exporter.get_finished_spans(), key=lambda s: s.start_time or 0
    )
    spans = {"a": a_span, "b": b_span}
    for name, span in spans.items():
        assert span.kind is SpanKind.SERVER, name
        assert span.name == "GET /slow", name
        found = attributes(span)
        # Our client closed; A aborts its call to B (a reset, as a rule).
        endings = {"a": {"client_closed"}, "b": {"client_reset", "client_closed"}}
        assert found.get("twisted_close.ending") in endings[name], (name, found)
        assert 0 < found["twisted_close.elapsed"] < 10
        [event] = span.events
        assert event.name == "twisted_close.outcome"
        assert dict(event.attributes or {}) == {
            k: v for k, v in found.items() if k.startswith("twisted_close.")
        }
    # A's call was cancelled; B, A's client, carries A's trace: one trace.
    assert attributes(a_span)["twisted_close.cancelled"] == 1
    assert a_span.context is not None and b_span.context is not None
    assert b_span.context.trace_id == a_span.context.trace_id
    assert b_span.parent is not None
    assert b_span.parent.span_id == a_span.context.span_id
    assert a_span.parent is None  # the client sent no traceparent


class InMemoryTracingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.clock = Clock()
        self.ledger = Ledger(self.clock)
        root = Resource()
        root.putChild(
            b"slow",
            DelayedResource("done", delay=2, clock=self.clock, ledger=self.ledger),
        )
        tracing = RequestTracing(self.ledger, provider)
        self.server = InMemoryServer(tracing.resource(root), clock=self.clock)

    def test_a_completed_request_ends_its_span_with_its_outcome(self) -> None:
        self.server.get("/slow")
        self.assertEqual(self.exporter.get_finished_spans(), ())
        self.server.advance(2)
        [span] = self.exporter.get_finished_spans()
        self.assertEqual(attributes(span)["twisted_close.ending"], "completed")
        self.assertEqual(attributes(span)["twisted_close.elapsed"], 2.0)

    def test_a_request_the_ledger_never_held_ends_with_its_status(self) -> None:
        self.server.get("/missing")
        [span] = self.exporter.get_finished_spans()
        self.assertEqual(attributes(span)["http.response.status_code"], 404)
        self.assertNotIn("twisted_close.ending", attributes(span))

    def test_a_traceparent_makes_the_span_a_child(self) -> None:
        parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        client = self.server.connect()
        client.send(
            b"GET /slow HTTP/1.1\r\nHost: localhost\r\n"
            b"traceparent: " + parent.encode() + b"\r\n\r\n"
        )
        client.close()
        [span] = self.exporter.get_finished_spans()
        self.assertEqual(attributes(span)["twisted_close.ending"], "client_closed")
        assert span.parent is not None and span.context is not None
        self.assertEqual(f"{span.context.trace_id:032x}", parent.split("-")[1])
        self.assertEqual(f"{span.parent.span_id:016x}", parent.split("-")[2])

    def test_the_pages_example_traces_a_client_leaving(self) -> None:
        sample = runpy.run_path(str(EXAMPLE.parent / "tracing.py"))
        sample["provider"].add_span_processor(SimpleSpanProcessor(self.exporter))
        server = InMemoryServer(sample["site"].resource, clock=self.clock)
        server.get("/slow").close()
        [span] = self.exporter.get_finished_spans()
        self.assertEqual(attributes(span)["twisted_close.ending"], "client_closed")
        self.assertEqual(sample["ledger"].interrupted, 1)

    def test_two_requests_alike_from_one_client_each_end_their_span(self) -> None:
        # As HTTP/2 streams would be: same client, method and path.
        first, second = (self.server.connect(port=40000) for _ in range(2))
        for client in (first, second):
            client.send(b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n")
        first.close()
        self.server.advance(2)
        endings = [
            attributes(s)["twisted_close.ending"]
            for s in self.exporter.get_finished_spans()
        ]
        self.assertEqual(endings, ["client_closed", "completed"])


class OutcomeAttributesTests(SynchronousTestCase):
    def test_the_phase_is_an_attribute_when_the_outcome_has_one(self) -> None:
        @dataclasses.dataclass(frozen=True)
        class Phased(Outcome):
            phase: str = ""

        left = Phased("GET", "/", "127.0.0.1:1", 0.5, Ending.CLIENT_CLOSED)
        self.assertNotIn("twisted_close.phase", outcome_attributes(left))
        answering = dataclasses.replace(left, phase="answering")
        self.assertEqual(
            outcome_attributes(answering)["twisted_close.phase"], "answering"
        )
