"""
The Twisted behaviours that L{twisted_close._twisted.request} relies on (the
request and its channel), each pinned by a test that fails if a Twisted
upgrade changes it.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

from h2.events import StreamReset
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionAborted, ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web import server
from twisted.web._http2 import H2Stream
from twisted.web.http import HTTPChannel, Request
from twisted.web.iweb import INonQueuedRequestFactory, IRequest
from twisted.web.server import Site
from twisted.web.test.requesthelper import DummyChannel
from zope.interface import implementedBy

from twisted_close import DelayedResource, Ending, Ledger
from twisted_close._twisted.request import (
    SPOOLED_FROM,
    abort_connection,
    abort_request,
    body_bounded,
    body_length,
    body_refused,
    channel_of,
    keep_alive_off,
    reject_body_h1,
    request_state,
    server_closing,
    set_client_address,
    transport_of,
    transport_paused,
)
from twisted_close.testing import InMemoryServer

from .twisted_pins import (
    Holding,
    _client_events,
    _h2_answering,
    _h2_in_memory,
    h2_serving,
    held,
)


class RequestStateTests(SynchronousTestCase):
    def test_a_lost_request_is_disconnected_not_finished(self) -> None:
        _, _, client, request = held()
        self.assertEqual(request_state(request), (False, False))
        client.close()
        # Request.connectionLost sets _disconnected; finished stays False.
        self.assertEqual(request_state(request), (False, True))
        self.assertFalse(request.finished)

    def test_a_finished_request_is_finished(self) -> None:
        _, _, _, request = held()
        request.finish()
        self.assertEqual(request_state(request), (True, False))

    def test_notify_finish_after_the_loss_never_fires(self) -> None:
        # Twisted #4899: why request_state must be asked first.
        _, _, client, request = held()
        client.close()
        self.assertNoResult(request.notifyFinish())


class ClientAddressTests(SynchronousTestCase):
    def test_a_client_address_set_is_what_the_request_says(self) -> None:
        _, _, _, request = held()
        forwarded = IPv4Address("TCP", "198.51.100.7", 0)
        set_client_address(request, forwarded)
        # Request.client is what getClientAddress() returns.
        self.assertIs(request.getClientAddress(), forwarded)


class ChannelTests(SynchronousTestCase):
    def test_the_channel_is_dropped_when_the_connection_is_lost(self) -> None:
        _, _, client, request = held()
        channel = channel_of(request)
        self.assertIsInstance(channel, HTTPChannel)
        self.assertIs(transport_of(channel), client.transport)
        client.close()
        # Hence the watch keeps the channel it saw while the request lived.
        self.assertIsNone(channel_of(request))

    def test_the_transport_of_an_http2_stream_is_its_connections(self) -> None:
        # H2Stream.transport is None; H2Stream._conn.transport is the socket's.
        server, _, _ = _h2_in_memory()
        stream = server.streams[1]
        self.assertIsNone(stream.transport)
        self.assertIs(transport_of(stream), server.transport)
        self.assertIsNotNone(server.transport)

    def test_a_close_the_server_began_is_the_servers(self) -> None:
        _, _, client, request = held()
        channel = channel_of(request)
        self.assertEqual(server_closing(channel), (False, False))
        client.transport.loseConnection()
        self.assertEqual(server_closing(channel), (False, True))

    def test_a_close_the_server_began_under_http2_is_on_its_connection(
        self,
    ) -> None:
        server, _, _ = _h2_in_memory()
        stream = server.streams[1]
        self.assertEqual(server_closing(stream), (True, False))
        assert server.transport is not None
        server.transport.loseConnection()
        self.assertEqual(server_closing(stream), (True, True))


class ProducerTests(SynchronousTestCase):
    def test_a_paused_transport_is_seen_on_the_request(self) -> None:
        # HTTPChannel._waitingForTransport: a producer registered now would
        # not be told of the pause that came before.
        _, _, client, request = held()
        self.assertFalse(transport_paused(request))
        producer = client.transport.producer
        assert producer is not None
        producer.pauseProducing()
        self.assertTrue(transport_paused(request))
        producer.resumeProducing()
        self.assertFalse(transport_paused(request))


class ConnectionTests(SynchronousTestCase):
    def test_keep_alive_off_closes_after_the_answer(self) -> None:
        _, _, client, request = held()
        keep_alive_off(request)
        request.finish()
        self.assertTrue(client.closed_by_server)

    def test_abort_aborts_the_transport(self) -> None:
        _, _, client, request = held()
        aborted: list[bool] = []
        client.transport.abortConnection = lambda: aborted.append(True)  # type: ignore[method-assign]
        self.assertTrue(abort_connection(request))
        self.assertEqual(aborted, [True])
        self.assertTrue(issubclass(ConnectionAborted, Exception))


def test_an_idle_timeout_of_the_connection_is_the_servers_doing() -> None:
    """
    H2Connection times out on quiet alone, pending streams or not; when it
    does, its streams hear "Producing stopped" like any lost connection, but
    it was the server that closed it.
    """
    clock, ledger = Clock(), Ledger()
    site = Site(DelayedResource(delay=30, clock=clock, ledger=ledger))
    # callLater: as _GenericHTTPChannelProtocol gives it.
    server, _, transport = h2_serving(
        site, clock, ["/slow"], timeOut=5, callLater=clock.callLater
    )
    assert ledger.pending == 1
    clock.advance(5)
    assert transport.disconnecting
    # The transport goes: TCP stops its producer, then tells of the loss.
    server.stopProducing()
    server.connectionLost(Failure(ConnectionDone()))
    assert ledger.server_endings[Ending.SERVER_CLOSED] == 1
    assert ledger.interrupted == 0
    assert ledger.pending == 0


class AbortRequestTests(SynchronousTestCase):
    def test_an_h2_stream_aborts_itself_alone(self) -> None:
        _server, client, transport, clock, request = _h2_answering()
        stream: Any = channel_of(request)
        self.assertIsInstance(stream, H2Stream)
        self.assertEqual(stream.streamID, 1)
        self.assertTrue(callable(stream.abortConnection))
        self.assertFalse(hasattr(HTTPChannel, "streamID"))
        _client_events(client, transport)
        self.assertTrue(abort_request(request))
        clock.advance(0)
        [reset] = _client_events(client, transport)
        self.assertIsInstance(reset, StreamReset)
        self.assertEqual(reset.stream_id, 1)
        self.assertFalse(transport.disconnecting)


def _bounded(max_body: int) -> tuple[Any, Holding, list[tuple[Any, int | None]]]:
    """
    An in-memory server whose site's bodies are bounded at C{max_body},
    what it rendered and what it refused.
    """
    refused: list[tuple[Any, int | None]] = []
    resource = Holding()
    site = Site(resource, reactor=Clock())
    site.requestFactory = body_bounded(
        site.requestFactory, max_body, lambda r, n: refused.append((r, n))
    )
    return InMemoryServer(site), resource, refused


class BodyBoundedTests(SynchronousTestCase):
    def test_a_length_over_the_bound_is_refused_before_any_body(self) -> None:
        server, resource, refused = _bounded(10)
        client = server.connect()
        client.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n")
        # gotLength came with the head, before any byte of the body.
        [(request, length)] = refused
        self.assertEqual(length, 11)
        self.assertTrue(body_refused(request))
        client.send(b"x" * 11)
        self.assertEqual(resource.requests, [])  # never rendered
        self.assertEqual(request.content.getvalue(), b"")

    def test_a_chunked_body_is_cut_as_it_passes_the_bound(self) -> None:
        server, resource, refused = _bounded(10)
        client = server.connect()
        client.send(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"6\r\nabcdef\r\n"
        )
        self.assertEqual(refused, [])
        client.send(b"6\r\nghijkl\r\n0\r\n\r\n")
        [(request, length)] = refused
        self.assertIsNone(length)
        self.assertEqual(request.content.getvalue(), b"abcdef")
        self.assertEqual(resource.requests, [])

    def test_a_body_within_the_bound_is_read_into_memory_and_rendered(self) -> None:
        server, resource, refused = _bounded(10)
        client = server.connect()
        client.send(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n"
        )
        [request] = resource.requests
        self.assertEqual(refused, [])
        self.assertFalse(body_refused(request))
        self.assertEqual(request.content.read(), b"hello")
        self.assertEqual(body_length(request), 5)

    def test_twisted_spools_a_body_of_unknown_length_the_bound_does_not(self) -> None:
        # What the bound prevents: Twisted's own choice is a temporary file.
        plain: Any = Request(DummyChannel())  # type: ignore[arg-type]
        plain.gotLength(None)
        self.assertNotIsInstance(plain.content, BytesIO)
        plain.content.close()
        bounded = body_bounded(Request, SPOOLED_FROM - 1, lambda r, n: None)
        request = bounded(DummyChannel())
        request.gotLength(None)
        self.assertIsInstance(request.content, BytesIO)
        # From the spooling size on, Twisted's choice stands.
        large = body_bounded(Request, SPOOLED_FROM, lambda r, n: None)(DummyChannel())
        large.gotLength(SPOOLED_FROM)
        self.assertNotIsInstance(large.content, BytesIO)
        large.content.close()

    def test_a_bounded_class_declares_what_its_factory_does(self) -> None:
        # Its own declaration (asked of it by HTTPChannel per request)
        # keeps every interface of the class it bounds, and adds none.
        bounded = body_bounded(server.Request, 10, lambda r, n: None)
        self.assertIn("__implemented__", vars(bounded))
        self.assertEqual(
            list(implementedBy(bounded)), list(implementedBy(server.Request))
        )
        self.assertTrue(IRequest.implementedBy(bounded))
        self.assertFalse(INonQueuedRequestFactory.providedBy(bounded))

    def test_body_length_of_an_unbounded_request_reads_its_content(self) -> None:
        resource = Holding()
        server = InMemoryServer(resource, clock=Clock())
        client = server.connect()
        client.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
        [request] = resource.requests
        self.assertEqual(body_length(request), 3)
        self.assertEqual(request.content.read(), b"abc")  # left where it was

    def test_reject_body_h1_answers_and_closes(self) -> None:
        server, _, refused = _bounded(0)
        client = server.connect()
        client.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\n")
        [(request, _)] = refused
        self.assertTrue(reject_body_h1(request, b"HTTP/1.1 413 X\r\n\r\n"))
        self.assertEqual(client.transport.value(), b"HTTP/1.1 413 X\r\n\r\n")
        self.assertTrue(client.closed_by_server)
        self.assertFalse(reject_body_h1(object(), b""))
