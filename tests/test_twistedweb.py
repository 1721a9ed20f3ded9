"""
The Twisted behaviours that L{twisted_close._twistedweb} relies on, each
pinned here: if a Twisted upgrade changes one, this file fails, loudly and
by name, rather than an outcome going wrong somewhere else.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.error import ConnectionAborted
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from twisted_close import Ending
from twisted_close._twistedweb import (
    abort_connection,
    channel_of,
    connection_closing,
    keep_alive_off,
    request_state,
    tcp_endpoint_address,
    transport_of,
    transport_paused,
)
from twisted_close.testing import Connection, InMemoryServer


class Holding(Resource):
    """
    Keeps every request it gets, unanswered.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Any] = []

    def render(self, request: Any) -> int:
        self.requests.append(request)
        return NOT_DONE_YET


def held() -> tuple[InMemoryServer, Holding, Connection, Any]:
    resource = Holding()
    server = InMemoryServer(resource, clock=Clock())
    client = server.get("/")
    [request] = resource.requests
    return server, resource, client, request


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
        from .test_h2 import _h2_in_memory

        server, _, _ = _h2_in_memory()
        stream = server.streams[1]
        self.assertIsNone(stream.transport)
        self.assertIs(transport_of(stream), server.transport)
        self.assertIsNotNone(server.transport)

    def test_a_close_the_server_began_is_the_servers(self) -> None:
        _, _, client, request = held()
        channel = channel_of(request)
        self.assertFalse(connection_closing(channel, Ending.CLIENT_CLOSED))
        client.transport.loseConnection()
        self.assertTrue(connection_closing(channel, Ending.CLIENT_CLOSED))
        # A reset is never the server's close.
        self.assertFalse(connection_closing(channel, Ending.CLIENT_RESET))


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


class EndpointTests(SynchronousTestCase):
    def test_tcp_endpoints_say_their_address(self) -> None:
        reactor = MemoryReactor()
        v4 = TCP4ServerEndpoint(reactor, 8123, backlog=77, interface="127.0.0.1")
        self.assertEqual(tcp_endpoint_address(v4), ("127.0.0.1", 8123, 77))
        v6 = TCP6ServerEndpoint(reactor, 0, interface="::1")
        self.assertEqual(tcp_endpoint_address(v6), ("::1", 0, 50))
