"""
What the C{tests/test_twisted_*.py} pins share: servers, connections and
sockets set up in memory or on loopback to watch a Twisted behaviour.
"""

from __future__ import annotations

import errno
import functools
import socket
import struct
import tempfile
import time
from collections.abc import Callable, Sequence
from io import BytesIO
from pathlib import Path
from typing import Any

from h2.config import H2Configuration
from h2.connection import H2Connection as H2Client
from h2.events import DataReceived
from twisted.internet import tcp
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.ssl import CertificateOptions, PrivateCertificate
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web._http2 import H2Connection
from twisted.web.http import HTTPChannel
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from twisted_close._linux import bytes_acked
from twisted_close._twisted.request import (
    request_state,
)
from twisted_close._twisted.tcp import connection_bytes, tcp_socket
from twisted_close._twisted.wrapping import guard_protocols
from twisted_close.testing import Connection, InMemoryServer

from .helpers import self_signed

__all__ = [
    "Holding",
    "_Closed",
    "_Hooks",
    "_Listener",
    "_Passing",
    "_Reserve",
    "_Socket",
    "_Told",
    "_Watching",
    "_big_post",
    "_certificate",
    "_client_events",
    "_get",
    "_guarded_site",
    "_h2_answering",
    "_h2_in_memory",
    "_past_the_window",
    "_settled",
    "_site_protocol",
    "_spin",
    "_tcp_connection",
    "_tls_connected",
    "_tls_pair",
    "h2_serving",
    "held",
]


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


def _get_headers(path: str) -> list[tuple[str, str]]:
    """
    An HTTP/2 C{GET} of C{path}'s headers.
    """
    return [
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "localhost"),
        (":path", path),
    ]


def _h2_client(paths: Sequence[str]) -> H2Client:
    """
    An HTTP/2 client that opened the connection and one stream, a C{GET}
    ended at once, per path: what it would send is in its
    C{data_to_send()}.
    """
    client = H2Client(H2Configuration(client_side=True))
    client.initiate_connection()
    for n, path in enumerate(paths):
        client.send_headers(1 + 2 * n, _get_headers(path), end_stream=True)
    return client


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
    client = _h2_client(paths)
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


def _read_and_open_window(
    server: H2Connection, client: H2Client, transport: StringTransport
) -> None:
    """
    The client takes in what the server sent and opens its window wide:
    what flow control held back may go out.
    """
    for event in _client_events(client, transport):
        if isinstance(event, DataReceived):
            client.acknowledge_received_data(
                event.flow_controlled_length, event.stream_id
            )
    client.increment_flow_control_window(100_000)
    server.dataReceived(client.data_to_send())


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


def h2_site_connection(
    site: Site, clock: Clock, *paths: str
) -> tuple[Any, StringTransport, H2Client]:
    """
    What C{site} builds for a connection on which ALPN chose h2, after the
    client's preface and a C{GET} stream per path (1, 3, 5...) have come
    and C{clock} turned once.  Patch C{twisted.web.http.H2Connection} to
    build its connection on C{clock} first.
    """
    protocol: Any = site.buildProtocol(None)
    transport = StringTransport()
    untyped: Any = transport
    untyped.negotiatedProtocol = b"h2"
    protocol.makeConnection(transport)
    client = _h2_client(paths)
    protocol.dataReceived(client.data_to_send())
    clock.advance(0)
    return protocol, transport, client


def written_offset(transport: object) -> int | None:
    """
    L{ConnectionBytes.written}, found anew.
    """
    found = connection_bytes(transport)
    return None if found is None else found.written()


def acknowledged(transport: object) -> int | None:
    """
    How many bytes the peer's kernel acknowledged on the TCP connection
    under C{transport}; C{None} where it cannot be known.
    """
    sock = tcp_socket(transport)
    return None if sock is None else bytes_acked(sock)
