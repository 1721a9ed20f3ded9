"""
The Twisted behaviours that L{twisted_close._twistedweb} relies on, each
pinned here: if a Twisted upgrade changes one, this file fails, loudly and
by name, rather than an outcome going wrong somewhere else.
"""

from __future__ import annotations

from typing import Any

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection as H2Client
from h2.errors import ErrorCodes
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web._http2 import H2Connection
from twisted.web.http import HTTPChannel
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from twisted_close import DelayedResource, Ending, Ledger, classify
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


class ClassifyTests(SynchronousTestCase):
    def test_endings(self) -> None:
        from twisted.internet.error import (
            ConnectionAborted,
            ConnectionDone,
            ConnectionLost,
        )

        self.assertIs(classify(Failure(ConnectionDone())), Ending.CLIENT_CLOSED)
        self.assertIs(classify(Failure(ConnectionLost())), Ending.CLIENT_RESET)
        self.assertIs(classify(Failure(ConnectionAborted())), Ending.SERVER_ABORTED)
        self.assertIs(classify(Failure(ValueError())), Ending.CLIENT_LOST)


# -- classify() on the failures Twisted makes ---------------------------------


class _Watching(Resource):
    """
    Answer nothing; keep the failure each request's notifyFinish() gets.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.failures: dict[bytes, Failure] = {}

    def render(self, request: IRequest) -> int:
        def lost(reason: Failure) -> None:
            self.failures[request.path] = reason

        # IRequest lacks notifyFinish(); every twisted.web request has it.
        request.notifyFinish().addErrback(lost)  # type: ignore[attr-defined]
        return NOT_DONE_YET


def _h2_in_memory() -> tuple[H2Connection, H2Client, _Watching]:
    """
    Twisted's HTTP/2 server connection on a L{Clock} and a L{StringTransport},
    set up as C{twisted.web.http._GenericHTTPChannelProtocol} does after ALPN
    chose C{h2}, with a client that opened streams 1 (C{/a}) and 3 (C{/b}).
    """
    watching = _Watching()
    site = Site(watching)
    server = H2Connection(Clock())
    untyped: Any = server
    untyped.requestFactory = site.requestFactory
    untyped.site = site
    untyped.factory = site
    server.makeConnection(StringTransport())
    client = H2Client(H2Configuration(client_side=True))
    client.initiate_connection()
    for stream_id, path in [(1, "/a"), (3, "/b")]:
        headers = [
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", "localhost"),
            (":path", path),
        ]
        client.send_headers(stream_id, headers, end_stream=True)
    server.dataReceived(client.data_to_send())
    return server, client, watching


def test_classify_rst_stream_as_twisted_reports_it() -> None:
    server, client, watching = _h2_in_memory()
    assert watching.failures == {}

    client.reset_stream(3, ErrorCodes.CANCEL)
    server.dataReceived(client.data_to_send())
    [(path, reason)] = watching.failures.items()
    assert path == b"/b"
    assert isinstance(reason.value, ConnectionLost)
    assert type(reason.value) is ConnectionLost
    assert reason.value.args[0].startswith("Stream reset with code ")
    assert classify(reason) is Ending.STREAM_RESET

    # The transport going: TCP stops its producer (the H2Connection) before
    # it calls connectionLost; the streams left hear of the first only.
    server.stopProducing()
    server.connectionLost(Failure(ConnectionDone()))
    lost = watching.failures[b"/a"]
    assert isinstance(lost.value, ConnectionLost)
    assert lost.value.args == ("Producing stopped",)
    assert classify(lost) is Ending.CLIENT_LOST


def test_classify_goaway_as_twisted_reports_it() -> None:
    server, client, watching = _h2_in_memory()
    client.close_connection()
    server.dataReceived(client.data_to_send())
    assert set(watching.failures) == {b"/a", b"/b"}
    for reason in watching.failures.values():
        assert isinstance(reason.value, ConnectionLost)
        assert reason.value.args == ("Remote peer sent GOAWAY",)
        assert classify(reason) is Ending.CLIENT_CLOSED


@pytest.mark.parametrize(
    ("failure", "ending"),
    [
        # Python 3.10 formats the IntEnum by name, 3.11 on by number; an
        # unknown code is a plain int.
        (
            ConnectionLost("Stream reset with code ErrorCodes.CANCEL"),
            Ending.STREAM_RESET,
        ),
        (ConnectionLost("Stream reset with code 8"), Ending.STREAM_RESET),
        (ConnectionLost("Stream reset with code 4919"), Ending.STREAM_RESET),
        (ConnectionLost("Too many stream resets"), Ending.SERVER_ABORTED),
        # HTTP/1.1 is as before.
        (ConnectionLost(), Ending.CLIENT_RESET),
        (ConnectionLost("Connection reset by peer."), Ending.CLIENT_RESET),
        (ConnectionDone(), Ending.CLIENT_CLOSED),
    ],
)
def test_classify_by_twisted_message(failure: Exception, ending: Ending) -> None:
    assert classify(Failure(failure)) is ending


def test_an_idle_timeout_of_the_connection_is_the_servers_doing() -> None:
    """
    H2Connection times out on quiet alone, pending streams or not; when it
    does, its streams hear "Producing stopped" like any lost connection, but
    it was the server that closed it.
    """
    clock, ledger = Clock(), Ledger()
    site = Site(DelayedResource(delay=30, clock=clock, ledger=ledger))
    server = H2Connection(clock)
    untyped: Any = server
    untyped.requestFactory = site.requestFactory
    untyped.site = site
    untyped.factory = site
    untyped.timeOut = 5
    untyped.callLater = clock.callLater  # as _GenericHTTPChannelProtocol does
    transport = StringTransport()
    server.makeConnection(transport)
    client = H2Client(H2Configuration(client_side=True))
    client.initiate_connection()
    headers = [
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "localhost"),
        (":path", "/slow"),
    ]
    client.send_headers(1, headers, end_stream=True)
    server.dataReceived(client.data_to_send())
    assert ledger.pending == 1
    clock.advance(5)
    assert transport.disconnecting
    # The transport goes: TCP stops its producer, then tells of the loss.
    server.stopProducing()
    server.connectionLost(Failure(ConnectionDone()))
    assert ledger.server_endings[Ending.SERVER_CLOSED] == 1
    assert ledger.interrupted == 0
    assert ledger.pending == 0
