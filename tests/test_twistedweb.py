"""
The Twisted behaviours that L{twisted_close._twistedweb} relies on, each
pinned here: if a Twisted upgrade changes one, this file fails, loudly and
by name, rather than an outcome going wrong somewhere else.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import socket
import struct
import tempfile
import time
from collections.abc import Callable, Sequence
from io import BytesIO
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import twisted.web.http
from h2.config import H2Configuration
from h2.connection import H2Connection as H2Client
from h2.errors import ErrorCodes
from h2.events import DataReceived, StreamReset
from twisted.internet import tcp
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.internet.interfaces import (
    IHalfCloseableDescriptor,
    IHalfCloseableProtocol,
    ITCPTransport,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.ssl import CertificateOptions, PrivateCertificate
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.logger import ILogObserver, LogEvent, Logger
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web._http2 import H2Connection, H2Stream
from twisted.web.http import HTTPChannel
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from twisted_close import DelayedResource, Ending, Ledger, classify
from twisted_close._endings import Loss
from twisted_close._twistedweb import (
    NETWORK_PRODUCER,
    TCP_CLOSE,
    TCP_CLOSE_WAIT,
    GuardedProtocol,
    PeerTimedOut,
    abort_connection,
    abort_request,
    abort_stream,
    abort_transport,
    accept_failure,
    asyncio_event_loop,
    channel_of,
    close_at_once,
    guard_protocols,
    http11_channel,
    is_tls,
    keep_alive_off,
    keep_tls_tcp_reason,
    lose_connection,
    loss_of,
    network_producer,
    on_half_close,
    peer_timed_out,
    reactor_cutting_connections,
    receiving_request,
    record_stream_loss,
    redirect_accept_log,
    replace_network_producer,
    request_in_hand,
    request_state,
    reusable,
    server_closing,
    stop_after_answer,
    stream_blocked,
    stream_end_pending,
    tcp_endpoint_address,
    tcp_socket,
    tcp_state,
    tcp_transport_of,
    tls_tcp_reason,
    transport_of,
    transport_paused,
    watch_peer_timeout,
)
from twisted_close.testing import Connection, InMemoryServer

from .helpers import self_signed


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


def h2_serving(
    site: Site, clock: Clock, paths: Sequence[str], **settings: object
) -> tuple[H2Connection, H2Client, StringTransport]:
    """
    Twisted's HTTP/2 server connection for C{site} on C{clock} and a
    L{StringTransport}, set up as
    C{twisted.web.http._GenericHTTPChannelProtocol} does after ALPN chose
    C{h2} (C{settings} too, e.g. its C{timeOut}), with a client that opened
    one stream per path: 1, 3, 5...
    """
    server = H2Connection(clock)
    untyped: Any = server
    untyped.requestFactory = site.requestFactory
    untyped.site = site
    untyped.factory = site
    for name, value in settings.items():
        setattr(untyped, name, value)
    transport = StringTransport()
    server.makeConnection(transport)
    client = H2Client(H2Configuration(client_side=True))
    client.initiate_connection()
    for n, path in enumerate(paths):
        headers = [
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", "localhost"),
            (":path", path),
        ]
        client.send_headers(1 + 2 * n, headers, end_stream=True)
    server.dataReceived(client.data_to_send())
    return server, client, transport


def _h2_in_memory() -> tuple[H2Connection, H2Client, _Watching]:
    """
    L{h2_serving} on a clock of its own, with streams 1 (C{/a}) and 3
    (C{/b}) watched.
    """
    watching = _Watching()
    server, client, _ = h2_serving(Site(watching), Clock(), ["/a", "/b"])
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


# -- One HTTP/1.x connection: what the channel pauses, its state -------------


def _site_protocol(resource: Resource | None = None) -> tuple[Any, StringTransport]:
    """
    What a C{Site} builds for a connection, connected to a L{StringTransport}.
    """
    site = Site(resource if resource is not None else Holding(), reactor=Clock())
    protocol: Any = site.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


def _get(path: str = "/") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode("ascii")


def _big_post() -> bytes:
    body = b"x" * (2 * HTTPChannel._optimisticEagerReadSize)
    head = b"POST /big HTTP/1.1\r\nHost: localhost\r\n"
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


class _Passing:
    """
    A network producer that passes every call on, and notes it.
    """

    def __init__(self, below: Any) -> None:
        self.below = below
        self.calls: list[str] = []

    def pauseProducing(self) -> None:
        self.calls.append("pause")
        self.below.pauseProducing()

    def resumeProducing(self) -> None:
        self.calls.append("resume")
        self.below.resumeProducing()

    def stopProducing(self) -> None:
        self.calls.append("stop")
        self.below.stopProducing()


class NetworkProducerTests(SynchronousTestCase):
    def test_the_network_producer_is_the_transport(self) -> None:
        protocol, transport = _site_protocol()
        channel = http11_channel(protocol)
        self.assertEqual(NETWORK_PRODUCER, "_networkProducer")
        # Set by connectionMade, on the instance (replacing it adds nothing).
        self.assertIn(NETWORK_PRODUCER, vars(channel))
        self.assertIs(network_producer(channel), transport)

    def test_the_channel_pauses_it_past_16_kib_behind_a_request(self) -> None:
        resource = Holding()
        protocol, transport = _site_protocol(resource)
        channel = http11_channel(protocol)
        self.assertEqual(HTTPChannel._optimisticEagerReadSize, 16 * 1024)
        passing = _Passing(transport)
        replace_network_producer(channel, passing)
        self.assertIs(network_producer(channel), passing)
        protocol.dataReceived(_get())
        self.assertEqual(passing.calls, [])
        protocol.dataReceived(_big_post())
        # Through the replacement alone: the transport was paused by it.
        self.assertEqual(passing.calls, ["pause"])
        self.assertEqual(transport.producerState, "paused")
        resource.requests[0].finish()
        self.assertEqual(passing.calls[:2], ["pause", "resume"])
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual(len(resource.requests), 2)

    def test_an_http2_stream_has_none(self) -> None:
        server, _, _ = _h2_in_memory()
        self.assertIsNone(network_producer(server.streams[1]))


class ChannelStateTests(SynchronousTestCase):
    def test_the_http11_channel_of_what_a_site_built(self) -> None:
        protocol, transport = _site_protocol()
        channel = http11_channel(protocol)
        self.assertIsInstance(channel, HTTPChannel)
        self.assertIs(channel, protocol._channel)
        self.assertIs(http11_channel(channel), channel)
        self.assertIs(channel.transport, transport)

    def test_no_http11_channel_once_alpn_chose_h2(self) -> None:
        clock = Clock()
        # The H2Connection it builds runs on our clock, not the global reactor.
        self.patch(twisted.web.http, "H2Connection", lambda: H2Connection(clock))
        protocol, transport = _site_protocol()
        untyped: Any = transport
        untyped.negotiatedProtocol = b"h2"
        client = H2Client(H2Configuration(client_side=True))
        client.initiate_connection()
        protocol.dataReceived(client.data_to_send())
        self.assertIsInstance(protocol._channel, H2Connection)
        self.assertIsNone(http11_channel(protocol))
        self.assertIsNone(http11_channel(protocol._channel))

    def test_receiving_a_request(self) -> None:
        protocol, _ = _site_protocol()
        channel = http11_channel(protocol)
        self.assertFalse(receiving_request(channel))
        # A line begun: LineReceiver._buffer.
        protocol.dataReceived(b"GET / HT")
        self.assertTrue(receiving_request(channel))
        # The request line in: __first_line is 0.
        protocol.dataReceived(b"TP/1.1\r\n")
        self.assertEqual(channel._HTTPChannel__first_line, 0)
        self.assertTrue(receiving_request(channel))
        # Whole and in hand: _handlingRequest.
        protocol.dataReceived(b"Host: localhost\r\n\r\n")
        self.assertTrue(channel._handlingRequest)
        self.assertFalse(receiving_request(channel))

    def test_a_request_in_hand(self) -> None:
        resource = Holding()
        protocol, _ = _site_protocol(resource)
        channel = http11_channel(protocol)
        self.assertFalse(request_in_hand(channel))
        protocol.dataReceived(_get())
        self.assertEqual(list(channel.requests), resource.requests)
        self.assertTrue(request_in_hand(channel))
        resource.requests[0].finish()
        self.assertFalse(request_in_hand(channel))

    def test_reusable_idle_or_sending_its_head(self) -> None:
        resource = Holding()
        protocol, transport = _site_protocol(resource)
        channel = http11_channel(protocol)
        self.assertTrue(reusable(channel))
        protocol.dataReceived(b"POST / HTTP/1.1\r\nContent-Length: 4\r\n")
        self.assertTrue(channel.line_mode)
        self.assertTrue(reusable(channel))
        # The body is read in raw mode: an upload under way.
        protocol.dataReceived(b"\r\nab")
        self.assertFalse(channel.line_mode)
        self.assertFalse(reusable(channel))
        protocol.dataReceived(b"cd")
        self.assertFalse(reusable(channel))
        resource.requests[0].finish()
        self.assertTrue(reusable(channel))
        # An answer the transport is not taking yet.
        assert transport.producer is not None
        transport.producer.pauseProducing()
        self.assertTrue(channel._waitingForTransport)
        self.assertFalse(reusable(channel))

    def test_stop_after_answer_leaves_the_next_unread(self) -> None:
        resource = Holding()
        protocol, transport = _site_protocol(resource)
        channel = http11_channel(protocol)
        protocol.dataReceived(_get("/first") + _get("/second"))
        stop_after_answer(channel)
        self.assertFalse(channel.persistent)
        resource.requests[0].finish()
        self.assertEqual(len(resource.requests), 1)
        self.assertTrue(transport.disconnecting)

    def test_lose_connection_once_written(self) -> None:
        protocol, transport = _site_protocol()
        channel = http11_channel(protocol)
        lose_connection(channel)
        self.assertTrue(transport.disconnecting)
        lose_connection(object())  # nothing to lose: no error


# -- One HTTP/1.x connection over a real socket, no reactor -------------------


class _Socket:
    """
    A connected pair of loopback TCP sockets, closed at cleanup.
    """

    def __init__(self, case: SynchronousTestCase | None = None) -> None:
        listener = socket.create_server(("127.0.0.1", 0))
        self.client = socket.create_connection(listener.getsockname())
        self.server, _ = listener.accept()
        listener.close()
        if case is not None:
            case.addCleanup(self.close)

    def reset_by_client(self) -> None:
        self.client.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
        self.client.close()

    def close(self) -> None:
        self.client.close()
        self.server.close()


def _tcp_connection(
    case: SynchronousTestCase, resource: Resource | None = None
) -> tuple[_Socket, tcp.Server, Any]:
    """
    Twisted's TCP transport over a real loopback socket (on a
    L{MemoryReactor}: nothing runs it), with what a C{Site} builds on it.
    """
    pair = _Socket(case)
    site = Site(resource if resource is not None else Holding(), reactor=Clock())
    protocol: Any = site.buildProtocol(None)
    reactor = MemoryReactor()
    port = tcp.Port(0, site, reactor=reactor)
    peer = pair.server.getpeername()
    connection = tcp.Server(pair.server, protocol, peer, port, 0, reactor)
    protocol.makeConnection(connection)
    return pair, connection, protocol


def _settled(condition: Callable[[], bool]) -> bool:
    # The kernel handles a loopback FIN or RST in the sender's call, mostly;
    # a bounded wait covers a loaded machine.
    for _ in range(200):
        if condition():
            return True
        time.sleep(0.005)
    return condition()


class RealSocketTests(SynchronousTestCase):
    def test_tcp_transport_and_socket_through_tls(self) -> None:
        pair, connection, _ = _tcp_connection(self)
        self.assertIs(connection.getHandle(), pair.server)
        self.assertIs(tcp_transport_of(connection), connection)
        self.assertIs(tcp_socket(connection), pair.server)
        tls = _tls_pair()[0]
        tls.makeConnection(connection)
        # Its handle is the TLS connection; its transport is the TCP one.
        self.assertNotIsInstance(tls.getHandle(), socket.socket)
        self.assertIs(tls.transport, connection)
        self.assertIs(tcp_transport_of(tls), connection)
        self.assertIs(tcp_socket(tls), pair.server)
        # Not TCP: a UNIX socket, a transport in memory.
        self.assertIsNone(tcp_transport_of(StringTransport()))
        self.assertIsNone(tcp_socket(StringTransport()))
        left, right = socket.socketpair()
        self.addCleanup(left.close)
        self.addCleanup(right.close)
        self.assertIsNone(
            tcp_transport_of(tcp.Connection(left, Protocol(), MemoryReactor()))
        )

    def test_a_closed_tcp_transport_has_no_socket(self) -> None:
        _, connection, _ = _tcp_connection(self)
        connection.connectionLost(Failure(ConnectionDone()))
        with self.assertRaises(AttributeError):
            connection.getHandle()
        self.assertIsNone(tcp_socket(connection))

    def test_close_at_once_frees_the_descriptor_before_it_returns(self) -> None:
        pair, connection, protocol = _tcp_connection(self)
        channel = http11_channel(protocol)
        lost: list[Failure] = []
        protocol.connectionLost = lost.append
        close_at_once(channel)
        self.assertEqual(pair.server.fileno(), -1)
        self.assertTrue(connection.disconnected)
        self.assertEqual(len(lost), 1)

    def test_reusable_not_while_an_answer_waits_in_the_tcp_buffer(self) -> None:
        _, connection, protocol = _tcp_connection(self)
        channel = http11_channel(protocol)
        self.assertEqual((connection.dataBuffer, connection._tempDataBuffer), (b"", []))
        self.assertTrue(reusable(channel))
        connection.write(b"an answer not yet sent")
        self.assertTrue(connection._tempDataBuffer)
        self.assertFalse(reusable(channel))

    def test_a_fin_and_a_reset_as_tcp_reads_them(self) -> None:
        # What loss_of relies on: ConnectionDone for a FIN, a plain
        # ConnectionLost for a reset.
        pair, connection, _ = _tcp_connection(self)
        pair.client.shutdown(socket.SHUT_WR)
        self.assertTrue(_settled(lambda: tcp_state(pair.server) == TCP_CLOSE_WAIT))
        self.assertIsInstance(connection.doRead(), ConnectionDone)
        pair, connection, _ = _tcp_connection(self)
        pair.reset_by_client()
        self.assertTrue(_settled(lambda: tcp_state(pair.server) == TCP_CLOSE))
        self.assertIs(type(connection.doRead()), ConnectionLost)
        self.assertIs(loss_of(Failure(ConnectionDone())), Loss.DONE)
        self.assertIs(loss_of(Failure(ConnectionLost())), Loss.RESET)
        self.assertIs(loss_of(Failure(PeerTimedOut())), Loss.PEER_TIMEOUT)
        self.assertIsNone(loss_of(None))

    def test_a_half_close_keeps_the_connection_for_the_answer(self) -> None:
        resource = Holding()
        _, connection, protocol = _tcp_connection(self, resource)
        channel = http11_channel(protocol)
        # Twisted's TCP transport offers the half-close; the protocol a Site
        # builds does not take it.
        self.assertTrue(IHalfCloseableDescriptor.providedBy(connection))
        self.assertTrue(ITCPTransport.providedBy(connection))
        self.assertIs(connection.protocol, protocol)
        self.assertFalse(IHalfCloseableProtocol.providedBy(protocol))
        halves: list[str] = []
        self.assertTrue(on_half_close(channel, lambda: halves.append("fin")))
        self.assertTrue(IHalfCloseableProtocol.providedBy(protocol))
        protocol.dataReceived(_get())
        connection.readConnectionLost(Failure(ConnectionDone()))
        self.assertEqual(halves, ["fin"])
        self.assertFalse(connection.disconnected)
        resource.requests[0].write(b"still answered")
        self.assertIn(b"still answered", b"".join(connection._tempDataBuffer))
        # Only this instance: the next connection's protocol is as before.
        _, other, other_protocol = _tcp_connection(self)
        self.assertFalse(IHalfCloseableProtocol.providedBy(other_protocol))
        other.readConnectionLost(Failure(ConnectionDone()))
        self.assertTrue(other.disconnected)
        # Not TCP: not done.
        self.assertFalse(
            on_half_close(http11_channel(_site_protocol()[0]), lambda: None)
        )


def test_tcp_state_after_a_fin_and_after_a_reset() -> None:
    pair = _Socket()
    try:
        assert tcp_state(pair.server) not in (None, TCP_CLOSE, TCP_CLOSE_WAIT)
        pair.client.shutdown(socket.SHUT_WR)
        assert _settled(lambda: tcp_state(pair.server) == TCP_CLOSE_WAIT)
    finally:
        pair.close()
    pair = _Socket()
    try:
        pair.reset_by_client()
        assert _settled(lambda: tcp_state(pair.server) == TCP_CLOSE)
    finally:
        pair.close()
    # A closed socket cannot be asked.
    assert tcp_state(pair.server) is None


class _Hooks:
    """
    Notes what L{guard_protocols} tells, with the protocol's state then.
    """

    def __init__(self, read_timeout: float | None = 5.0) -> None:
        self.read_timeout = read_timeout
        self.seen: list[tuple[str, object]] = []

    def made(self, protocol: Any, transport: object) -> None:
        # Whether the protocol itself had heard of it yet.
        channel = getattr(protocol, "_channel", protocol)
        self.seen.append(("made", channel.transport is transport))

    def heard(self, protocol: Any) -> None:
        channel = getattr(protocol, "_channel", protocol)
        self.seen.append(("heard", channel.transport is not None))

    def lost(self, protocol: Any) -> None:
        requests = getattr(protocol, "_channel", protocol).requests
        self.seen.append(("lost", [request_state(r) for r in requests]))

    def reading(self, protocol: Any, receiving: bool) -> None:
        self.seen.append(("reading", receiving))
        # As the guard does: a timer while a request is being received.
        protocol.guard_read_timer = object() if receiving else None


def _guarded_site(
    resource: Resource | None = None, read_timeout: float | None = 5.0
) -> tuple[Site, _Hooks]:
    site = Site(resource if resource is not None else Holding(), reactor=Clock())
    hooks = _Hooks(read_timeout)
    guard_protocols(site, hooks)
    return site, hooks


class GuardedProtocolTests(SynchronousTestCase):
    def test_the_hooks_hear_of_the_connection_in_order(self) -> None:
        resource = Holding()
        site, hooks = _guarded_site(resource)
        protocol: Any = site.buildProtocol(None)
        transport = StringTransport()
        # As a port does.
        protocol.makeConnection(transport)
        # Made: before the protocol hears of it; heard: after.
        self.assertEqual(hooks.seen, [("made", False), ("heard", True)])
        protocol.dataReceived(_get())
        # A whole request read: nothing to tell.
        self.assertEqual(len(hooks.seen), 2)
        protocol.connectionLost(Failure(ConnectionDone()))
        # After the protocol heard: its request was told it was lost.
        self.assertEqual(hooks.seen[2:], [("lost", [(False, True)])])

    def test_reading_is_told_only_when_the_timer_must_change(self) -> None:
        site, hooks = _guarded_site()
        protocol: Any = site.buildProtocol(None)
        protocol.makeConnection(StringTransport())
        del hooks.seen[:]
        protocol.dataReceived(b"GET / HT")
        self.assertEqual(hooks.seen, [("reading", True)])
        # Told after the channel had the bytes (see test_receiving_a_request).
        protocol.dataReceived(b"TP/1.1\r\n")
        protocol.dataReceived(b"Host: localhost\r\n")
        self.assertEqual(len(hooks.seen), 1)
        protocol.dataReceived(b"\r\n")
        self.assertEqual(hooks.seen[1:], [("reading", False)])

    def test_each_protocol_is_twisteds_with_no_closure_of_its_own(self) -> None:
        plain: Any = Site(Holding(), reactor=Clock()).buildProtocol(None)
        site, _ = _guarded_site()
        guarded: Any = site.buildProtocol(None)
        # What twisted.web's own protocol factory builds, which the guarded
        # one builds as its subclass.
        self.assertIs(
            Site.protocol,
            twisted.web.http._genericHTTPChannelProtocolFactory,
        )
        self.assertIs(type(plain), twisted.web.http._GenericHTTPChannelProtocol)
        self.assertIs(type(plain._channel), HTTPChannel)
        self.assertIn(type(plain), type(guarded).__bases__)
        self.assertIsInstance(guarded, GuardedProtocol)
        self.assertIs(type(guarded._channel), HTTPChannel)
        self.assertIs(guarded.factory, site)
        # The same attributes: nothing per connection but the protocol.
        self.assertEqual(vars(guarded).keys(), vars(plain).keys())
        # One class for every connection of the site.
        self.assertIs(type(site.buildProtocol(None)), type(guarded))

    def test_any_other_protocol_has_its_class_changed(self) -> None:
        class Channel(HTTPChannel):
            pass

        hooks = _Hooks()
        untyped: Any = Site(Holding(), reactor=Clock())
        untyped.protocol = Channel
        guard_protocols(untyped, hooks)
        protocol: Any = untyped.buildProtocol(None)
        self.assertIsInstance(protocol, Channel)
        self.assertIsInstance(protocol, GuardedProtocol)
        protocol.makeConnection(StringTransport())
        protocol.dataReceived(b"GET / HTTP/1.1\r\n")
        self.assertEqual(
            hooks.seen, [("made", False), ("heard", True), ("reading", True)]
        )

    def test_no_read_timeout_no_reading(self) -> None:
        site, hooks = _guarded_site(read_timeout=None)
        protocol: Any = site.buildProtocol(None)
        protocol.makeConnection(StringTransport())
        protocol.dataReceived(b"GET / HT")
        self.assertEqual([kind for kind, _ in hooks.seen], ["made", "heard"])
        # Decided as each connection is made.
        hooks.read_timeout = 5.0
        protocol = site.buildProtocol(None)
        protocol.makeConnection(StringTransport())
        protocol.dataReceived(b"GET / HT")
        self.assertEqual(hooks.seen[-1], ("reading", True))

    def test_http2_is_not_read_timed(self) -> None:
        clock = Clock()
        # The H2Connection it builds runs on our clock, not the global reactor.
        self.patch(twisted.web.http, "H2Connection", lambda: H2Connection(clock))
        site, hooks = _guarded_site()
        protocol: Any = site.buildProtocol(None)
        transport = StringTransport()
        untyped: Any = transport
        untyped.negotiatedProtocol = b"h2"
        protocol.makeConnection(transport)
        client = H2Client(H2Configuration(client_side=True))
        client.initiate_connection()
        protocol.dataReceived(client.data_to_send()[:20])
        self.assertIsInstance(protocol._channel, H2Connection)
        self.assertEqual([kind for kind, _ in hooks.seen], ["made", "heard"])

    def test_through_tls(self) -> None:
        site, hooks = _guarded_site()

        class TCP(StringTransport):
            def setTcpNoDelay(self, enabled: bool) -> None:
                pass

        server = TLSMemoryBIOFactory(_certificate().options(), False, site)
        tls: Any = server.buildProtocol(None)
        tls.makeConnection(TCP())
        self.assertEqual(hooks.seen, [("made", False), ("heard", True)])
        # The TLS layer is the transport the guarded protocol was made with.
        self.assertIs(tls.wrappedProtocol._channel.transport, tls)
        tls.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(hooks.seen[2], ("lost", []))


# -- TLS: what TCP said, under TLSMemoryBIOProtocol ---------------------------


class _Told(Protocol):
    """
    Keeps the reason it was told its connection was lost.
    """

    reason: Failure | None = None

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.reason = reason


@functools.cache
def _certificate() -> PrivateCertificate:
    # The tests' one self-signed certificate, read back as Twisted's.
    with tempfile.TemporaryDirectory() as directory:
        files = self_signed(Path(directory))
        pem = files.cert.read_bytes() + files.key.read_bytes()
    certificate: PrivateCertificate = PrivateCertificate.loadPEM(pem)
    return certificate


def _tls_pair() -> tuple[TLSMemoryBIOProtocol, TLSMemoryBIOProtocol, _Told]:
    """
    A server and a client C{TLSMemoryBIOProtocol}, not yet connected, and
    the protocol the server's wraps.
    """
    wrapped = _Told()
    server_factory = TLSMemoryBIOFactory(
        _certificate().options(), False, Factory.forProtocol(lambda: wrapped)
    )
    client_factory = TLSMemoryBIOFactory(
        CertificateOptions(), True, Factory.forProtocol(_Told)
    )
    server = server_factory.buildProtocol(None)
    client = client_factory.buildProtocol(None)
    assert server is not None and client is not None
    return server, client, wrapped


def _tls_connected() -> tuple[TLSMemoryBIOProtocol, _Told]:
    """
    A server C{TLSMemoryBIOProtocol} whose handshake with a client is done,
    in memory, and the protocol it wraps.
    """
    server, client, wrapped = _tls_pair()
    to_server, to_client = StringTransport(), StringTransport()
    server.makeConnection(to_client)
    client.makeConnection(to_server)
    for _ in range(10):
        sent, to_server.io = to_server.value(), BytesIO()
        if sent:
            server.dataReceived(sent)
        answered, to_client.io = to_client.value(), BytesIO()
        if answered:
            client.dataReceived(answered)
        if not sent and not answered:
            break
    assert server._handshakeDone
    return server, wrapped


class TLSTests(SynchronousTestCase):
    def test_a_fin_and_a_reset_alike_are_a_bare_connection_lost(self) -> None:
        for tcp_reason in (ConnectionDone(), ConnectionLost()):
            server, wrapped = _tls_connected()
            self.assertTrue(is_tls(server))
            keep_tls_tcp_reason(server)
            self.assertIsNone(tls_tcp_reason(server))
            server.connectionLost(Failure(tcp_reason))
            assert wrapped.reason is not None
            self.assertIs(type(wrapped.reason.value), ConnectionLost)
            kept = tls_tcp_reason(server)
            assert kept is not None
            self.assertIs(kept.value, tcp_reason)

    def test_only_twisteds_tls_layer(self) -> None:
        self.assertFalse(is_tls(StringTransport()))
        transport = StringTransport()
        keep_tls_tcp_reason(transport)
        self.assertNotIn("connectionLost", vars(transport))
        self.assertIsNone(tls_tcp_reason(transport))


# -- HTTP/2: a stream's reset, its end ----------------------------------------


def _h2_answering() -> tuple[H2Connection, H2Client, StringTransport, Clock, Any]:
    """
    As L{_h2_in_memory}, on a clock of its own, with one stream (1) held.
    """
    resource = Holding()
    clock = Clock()
    server, client, transport = h2_serving(Site(resource), clock, ["/"])
    clock.advance(0)
    [request] = resource.requests
    return server, client, transport, clock, request


def _client_events(client: H2Client, transport: StringTransport) -> list[Any]:
    events = client.receive_data(transport.value())
    transport.clear()
    return list(events)


def _spin(clock: Clock, turns: int = 20) -> None:
    """
    Run the calls due now, C{turns} rounds at most: with its window used up
    H2Connection's sender calls itself again at once, and
    C{Clock.advance(0)} would never return.
    """
    for _ in range(turns):
        due = [call for call in clock.getDelayedCalls() if call.getTime() <= 0]
        if not due:
            return
        for call in due:
            untyped: Any = call
            clock.calls.remove(untyped)
            untyped.func(*untyped.args, **untyped.kw)


def _past_the_window(clock: Clock, request: Any) -> None:
    # More than the default window of 65535 bytes: some is held back.
    request.write(b"x" * 70_000)
    request.finish()
    _spin(clock)


class H2StreamTests(SynchronousTestCase):
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

    def test_abort_stream_resets_the_stream(self) -> None:
        _server, client, transport, clock, request = _h2_answering()
        _client_events(client, transport)
        abort_stream(channel_of(request))
        clock.advance(0)
        self.assertEqual(
            [type(event) for event in _client_events(client, transport)],
            [StreamReset],
        )
        self.assertFalse(transport.disconnecting)
        abort_stream(object())  # nothing to abort: no error

    def test_abort_transport_drops_the_whole_connection(self) -> None:
        _server, _, transport, _, request = _h2_answering()
        aborted: list[bool] = []
        untyped: Any = transport
        untyped.abortConnection = lambda: aborted.append(True)
        abort_transport(channel_of(request))
        self.assertEqual(aborted, [True])
        # Over HTTP/1.1 the channel's own transport.
        _, _, client, held_request = held()
        aborted.clear()
        untyped = client.transport
        untyped.abortConnection = lambda: aborted.append(True)
        abort_transport(channel_of(held_request))
        self.assertEqual(aborted, [True])

    def test_abort_request_over_http11_aborts_the_connection(self) -> None:
        _, _, client, request = held()
        aborted: list[bool] = []
        untyped: Any = client.transport
        untyped.abortConnection = lambda: aborted.append(True)
        self.assertTrue(abort_request(request))
        self.assertEqual(aborted, [True])

    def test_an_end_held_back_by_flow_control_then_sent(self) -> None:
        server, client, transport, clock, request = _h2_answering()
        stream = channel_of(request)
        self.assertFalse(stream_blocked(stream))
        # Not finished: not done with either (so it is asked after the finish).
        early = stream_end_pending(stream)
        assert early is not None
        self.assertNoResult(early)
        self.assertIsNone(stream_end_pending(object()))
        self.assertIsNone(server._consumerBlocked)
        lost: list[Failure] = []
        record_stream_loss(stream, lost.append)
        _past_the_window(clock, request)
        self.assertTrue(request.finished)
        self.assertIn(1, server._streamCleanupCallbacks)
        self.assertLess(server.remainingOutboundWindow(1), 0)
        self.assertTrue(stream_blocked(stream))
        done = stream_end_pending(stream)
        assert done is not None
        self.assertNoResult(done)
        # The client reads and opens the window: the end goes out.
        for event in _client_events(client, transport):
            if isinstance(event, DataReceived):
                client.acknowledge_received_data(
                    event.flow_controlled_length, event.stream_id
                )
        client.increment_flow_control_window(100_000)
        server.dataReceived(client.data_to_send())
        _spin(clock)
        self.assertIsNone(self.successResultOf(done))
        self.assertIsNone(self.successResultOf(early))
        self.assertEqual(lost, [])  # the stream was not told it was lost
        self.assertNotIn(1, server._streamCleanupCallbacks)
        self.assertIsNone(stream_end_pending(stream))

    def test_a_blocked_transport_blocks_every_stream(self) -> None:
        server, _, _, _, request = _h2_answering()
        server.pauseProducing()
        self.assertIsNotNone(server._consumerBlocked)
        self.assertTrue(stream_blocked(channel_of(request)))
        server.resumeProducing()
        self.assertFalse(stream_blocked(channel_of(request)))
        self.assertFalse(stream_blocked(object()))

    def test_a_reset_after_the_finish_is_told_to_the_stream_first(self) -> None:
        server, client, _transport, clock, request = _h2_answering()
        stream = channel_of(request)
        order: list[str] = []
        record_stream_loss(
            stream,
            lambda reason: order.append(str(getattr(reason.value, "args", ("",))[0])),
        )
        _past_the_window(clock, request)
        done = stream_end_pending(stream)
        assert done is not None
        done.addCallback(lambda _: order.append("done"))
        client.reset_stream(1, ErrorCodes.CANCEL)
        server.dataReceived(client.data_to_send())
        self.assertEqual(len(order), 2)
        self.assertTrue(order[0].startswith("Stream reset with code "))
        self.assertEqual(order[1], "done")

    def test_a_lost_connection_after_the_finish_is_told_to_the_stream_first(
        self,
    ) -> None:
        server, _, _, clock, request = _h2_answering()
        stream = channel_of(request)
        order: list[str] = []
        record_stream_loss(
            stream, lambda reason: order.append(type(reason.value).__name__)
        )
        _past_the_window(clock, request)
        done = stream_end_pending(stream)
        assert done is not None
        done.addCallback(lambda _: order.append("done"))
        server.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(order, ["ConnectionLost", "done"])


# -- Peers that stopped responding --------------------------------------------


class PeerTimedOutTests(SynchronousTestCase):
    def test_a_peer_timeout_is_a_connection_lost_of_its_own(self) -> None:
        error = PeerTimedOut()
        self.assertIsInstance(error, ConnectionLost)
        self.assertEqual(str(error), "the peer stopped responding")
        self.assertIs(classify(Failure(error)), Ending.PEER_TIMED_OUT)

    def _reset_and_lost(self) -> tuple[Any, Any, list[Failure]]:
        """
        A watched connection reset by its client and told so: the
        connection, its protocol, and what the protocol was told.
        """
        pair, connection, protocol = _tcp_connection(self)
        watch_peer_timeout(connection)
        told: list[Failure] = []
        untyped: Any = protocol
        untyped.connectionLost = told.append
        pair.reset_by_client()
        connection.connectionLost(Failure(ConnectionLost()))
        return connection, protocol, told

    def test_a_reset_with_nothing_unanswered_stays_a_reset(self) -> None:
        _, protocol, told = self._reset_and_lost()
        [reason] = told
        self.assertIs(type(reason.value), ConnectionLost)
        self.assertFalse(peer_timed_out(http11_channel(protocol)))

    def test_told_twice_the_second_time_passes_through(self) -> None:
        connection, _, told = self._reset_and_lost()
        # The socket is gone: Twisted's own check ends it, as it would.
        connection.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(len(told), 1)

    def test_what_the_transport_had_of_its_own_is_called(self) -> None:
        _, connection, _ = _tcp_connection(self)
        told: list[Failure] = []
        untyped: Any = connection
        untyped.connectionLost = told.append
        watch_peer_timeout(connection)
        self.assertIsNot(connection.connectionLost, told.append)
        reason = Failure(ConnectionDone())
        connection.connectionLost(reason)
        self.assertEqual(told, [reason])

    def test_the_mark_is_found_through_tls_and_http2(self) -> None:
        _pair, connection, protocol = _tcp_connection(self)
        channel = http11_channel(protocol)
        self.assertFalse(peer_timed_out(channel))
        untyped: Any = connection
        untyped._twisted_close_peer_gave_up = True
        self.assertTrue(peer_timed_out(channel))
        _server, _, transport, _, request = _h2_answering()
        self.assertFalse(peer_timed_out(channel_of(request)))
        untyped = transport
        untyped._twisted_close_peer_gave_up = True
        self.assertTrue(peer_timed_out(channel_of(request)))
        tls = _tls_pair()[0]
        tls.makeConnection(connection)
        self.assertTrue(peer_timed_out(SimpleNamespace(transport=tls)))


# -- Listening ports: failed accepts ------------------------------------------


class _Listener:
    """
    A listening socket whose accepts fail with C{errors} in turn, then
    yield C{clients}, then find nobody waiting.
    """

    def __init__(self, errors: list[int], clients: list[Any]) -> None:
        self.errors = errors
        self.clients = clients

    def accept(self) -> tuple[Any, tuple[str, int]]:
        if self.errors:
            raise OSError(self.errors.pop(0), "accept")
        if self.clients:
            return self.clients.pop(0), ("127.0.0.1", 4000 + len(self.clients))
        raise OSError(errno.EAGAIN, "accept")


class _Closed:
    closed = False

    def close(self) -> None:
        self.closed = True


class _Reserve:
    """
    The reserved descriptor a port frees on C{EMFILE}.
    """

    def available(self) -> bool:
        return True

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        return None


class AcceptLogTests(SynchronousTestCase):
    def port_failing(self, errors: list[int], clients: list[Any]) -> list[LogEvent]:
        port: Any = tcp.Port(0, Factory.forProtocol(Protocol), reactor=MemoryReactor())
        self.assertIsInstance(port._logger, Logger)
        events: list[LogEvent] = []
        self.assertTrue(redirect_accept_log(port, cast(ILogObserver, events.append)))
        self.patch(tcp, "_reservedFD", _Reserve())
        port.socket = _Listener(errors, clients)
        port.numberAccepts = 100  # as startListening sets it
        port.doRead()
        return events

    def test_emfile_turns_each_waiting_client_away(self) -> None:
        clients = [_Closed(), _Closed()]
        events = self.port_failing([errno.EMFILE], list(clients))
        self.assertTrue(all(client.closed for client in clients))
        self.assertEqual(
            [accept_failure(event) for event in events], ["", "EMFILE", "EMFILE", ""]
        )

    def test_enfile_leaves_the_client_waiting(self) -> None:
        events = self.port_failing([errno.ENFILE], [])
        self.assertEqual([accept_failure(event) for event in events], ["ENFILE"])

    def test_other_events_are_not_about_accepting(self) -> None:
        self.assertIsNone(accept_failure({"log_format": "Starting factory {f}"}))
        self.assertIsNone(accept_failure({}))

    def test_a_port_without_a_logger(self) -> None:
        self.assertFalse(redirect_accept_log(object(), cast(ILogObserver, print)))


# -- The reactor --------------------------------------------------------------


class ReactorTests(SynchronousTestCase):
    def test_the_asyncio_reactors_loop(self) -> None:
        from twisted.internet.asyncioreactor import AsyncioSelectorReactor

        loop = asyncio.new_event_loop()
        self.addCleanup(loop.close)
        reactor = AsyncioSelectorReactor(loop)
        self.assertIs(reactor._asyncioEventloop, loop)
        self.assertIs(asyncio_event_loop(reactor), loop)
        self.assertIsNone(asyncio_event_loop(Clock()))
        self.assertIsNone(asyncio_event_loop(MemoryReactor()))

    def test_shutdown_stops_running_before_dropping_connections(self) -> None:
        from twisted.internet.selectreactor import SelectReactor

        reactor = SelectReactor()
        self.addCleanup(reactor.waker.connectionLost, None)
        pair = _Socket(self)
        told: list[tuple[bool, Failure]] = []

        class Selectable:
            def fileno(self) -> int:
                return pair.server.fileno()

            def doRead(self) -> None:
                pass

            def logPrefix(self) -> str:
                return "selectable"

            def connectionLost(self, reason: Failure) -> None:
                told.append((reactor_cutting_connections(reactor), reason))

        reactor.addReader(Selectable())
        reactor.running = True
        self.assertFalse(reactor_cutting_connections(reactor))
        reactor.fireSystemEvent("shutdown")
        [(cutting, reason)] = told
        self.assertTrue(cutting)
        # The same failure as a client's reset.
        self.assertIs(type(reason.value), ConnectionLost)


# -- Every internal has its pin -----------------------------------------------


def test_every_internal_is_pinned_here() -> None:
    """
    Each function and class L{twisted_close._twistedweb} exports is named in
    this file: a new reliance on Twisted cannot come without its pin.
    """
    import inspect
    import re
    from pathlib import Path

    from twisted_close import _twistedweb

    here = Path(__file__).read_text(encoding="utf-8")
    # Called, not merely imported: "name(" somewhere in a test.
    missing = [
        name
        for name in _twistedweb.__all__
        if inspect.isfunction(getattr(_twistedweb, name))
        or inspect.isclass(getattr(_twistedweb, name))
        if not re.search(rf"\b{name}\(", here)
    ]
    assert missing == []
