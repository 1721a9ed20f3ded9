"""
The Twisted behaviours that L{twisted_close._twisted.request} relies on (the
request and its channel), each pinned by a test that fails if a Twisted
upgrade changes it.
"""

from __future__ import annotations

from typing import Any

from h2.events import StreamReset
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionAborted, ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web._http2 import H2Stream
from twisted.web.http import HTTPChannel
from twisted.web.server import Site

from twisted_close import DelayedResource, Ending, Ledger
from twisted_close._twisted.request import (
    abort_connection,
    abort_request,
    channel_of,
    keep_alive_off,
    request_state,
    server_closing,
    set_client_address,
    transport_of,
    transport_paused,
)

from .twisted_pins import (
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
