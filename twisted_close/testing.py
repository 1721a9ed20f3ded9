"""
Drive a twisted.web C{Site} in memory, with a C{Clock}, and make clients
leave at any moment: cleanly (C{ConnectionDone}) or with a reset
(C{ConnectionLost}).  Twisted's C{DummyRequest} cannot lose its connection;
this goes through a real C{HTTPChannel}, so what a client sees is what a
socket would carry.  Works under both trial and pytest::

    server = InMemoryServer(DelayedResource(delay=2, clock=clock), clock=clock)
    client = server.get("/slow")
    server.advance(1)
    client.close()                 # the client leaves after one second
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IAddress, IProtocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogEvent
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from twisted.web.resource import IResource
from twisted.web.server import Site

__all__ = [
    "Connection",
    "InMemoryServer",
    "Response",
    "dechunk",
    "outcome_events",
    "sse_blocks",
]

_NO_BODY = (204, 304)


@dataclass
class Response:
    """
    One response as the client received it.
    """

    status: int
    reason: bytes
    headers: Headers
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """
        The first value of header C{name}, or C{None}.
        """
        values = self.headers.getRawHeaders(name)
        return None if not values else values[0]


@dataclass
class _Parse:
    responses: list[Response] = field(default_factory=list)
    rest: bytes = b""


def _parse(data: bytes, methods: list[bytes], eof: bool) -> _Parse:
    """
    Split C{data} into the complete responses it holds, one per method.
    """
    result = _Parse()
    for method in methods:
        head_end = data.find(b"\r\n\r\n")
        if head_end < 0:
            break
        lines = data[:head_end].split(b"\r\n")
        _version, code, reason = ([*lines[0].split(b" ", 2), b""])[:3]
        headers = Headers()
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.addRawHeader(name.strip(), value.strip())
        response = Response(int(code), reason, headers)
        rest = data[head_end + 4 :]
        if method == b"HEAD" or response.status in _NO_BODY:
            body, data = b"", rest
        elif headers.getRawHeaders(b"transfer-encoding") == [b"chunked"]:
            parsed = _dechunk(rest)
            if parsed is None:
                break
            body, data = parsed
        elif (length := headers.getRawHeaders(b"content-length")) is not None:
            size = int(length[0])
            if len(rest) < size:
                break
            body, data = rest[:size], rest[size:]
        elif eof:
            body, data = rest, b""
        else:
            break
        response.body = body
        result.responses.append(response)
    result.rest = data
    return result


def _dechunk(data: bytes) -> tuple[bytes, bytes] | None:
    body, rest, ended = dechunk(data)
    return (body, rest) if ended else None


def dechunk(data: bytes) -> tuple[bytes, bytes, bool]:
    """
    Decode a chunked body from the start of C{data}, as far as whole chunks
    go: the data so far, the bytes after it, and whether the last chunk
    came (a stream that goes on has not sent it).
    """
    body = b""
    while True:
        size_end = data.find(b"\r\n")
        if size_end < 0:
            return body, data, False
        size = int(data[:size_end].split(b";")[0], 16)
        start = size_end + 2
        if len(data) < start + size + 2:
            return body, data, False
        if size == 0:
            return body, data[start + 2 :], True
        body += data[start : start + size]
        data = data[start + size + 2 :]


def sse_blocks(body: bytes) -> list[list[str]]:
    """
    The complete blocks of a C{text/event-stream} body (events and
    C{:} comments), each as its lines; a block still arriving is left out.
    """
    *complete, _partial = body.decode("utf-8").split("\n\n")
    return [block.split("\n") for block in complete]


def outcome_events(logged: Iterable[LogEvent]) -> list[LogEvent]:
    """
    The log events that report an outcome (an interruption or a server's
    end), as the ledger's reporter logs them.
    """
    return [e for e in logged if "outcome" in e]


class _Transport(StringTransport):
    # Like a socket's transport: connected until the connection is lost,
    # which happens on the reactor's next turn after the server closes it.
    connected = True

    def __init__(self, peer: IAddress, closing: Callable[[], object]) -> None:
        super().__init__(peerAddress=peer)  # type: ignore[no-untyped-call]
        self._closing = closing
        self.written = 0
        self.acked = 0
        self.on_lost: list[Callable[[int | None, bool], None]] = []

    def write(self, data: bytes) -> None:
        self.written += len(data)
        super().write(data)  # type: ignore[no-untyped-call]

    def writeSequence(self, data: Iterable[bytes]) -> None:
        self.write(b"".join(data))

    def hold(self) -> None:
        # What twisted_close._delivery asks of a transport that says itself
        # what was written and acknowledged: put in place only when asked.
        self.acked = self.written
        untyped: Any = self
        untyped.written_offset = lambda: self.written
        untyped.acknowledged = lambda: self.acked
        untyped.when_lost = self.on_lost.append

    def lost(self, clean: bool) -> None:
        told, self.on_lost = self.on_lost, []
        for lost in told:
            lost(self.acked, clean)

    def loseConnection(self) -> None:
        super().loseConnection()  # type: ignore[no-untyped-call]
        self._closing()


class Connection:
    """
    One client connection to an L{InMemoryServer}.
    """

    def __init__(self, server: InMemoryServer, peer: IAddress) -> None:
        self.server = server
        self.transport: StringTransport = _Transport(
            peer, lambda: server.clock.callLater(0, self._notice_close)
        )
        protocol = server.site.buildProtocol(peer)
        if protocol is None:
            raise ValueError("the site refused the connection")
        # Site wraps HTTPChannel in a protocol that can switch to HTTP/2.
        self.channel: IProtocol = protocol
        self._methods: list[bytes] = []
        self.lost = False
        self.channel.makeConnection(self.transport)

    def send(self, data: bytes, *methods: bytes) -> None:
        """
        Send raw bytes; C{methods} name the requests they hold, so that the
        responses can be told apart (C{HEAD} has no body).
        """
        self._methods.extend(methods)
        self.channel.dataReceived(data)
        self._notice_close()

    def request(
        self,
        path: str | bytes = "/",
        method: str | bytes = "GET",
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        host: str | None = "localhost",
    ) -> Connection:
        """
        Send one HTTP/1.1 request, with C{Host: host} (none if C{None}).
        """
        m = method.encode("ascii") if isinstance(method, str) else method
        p = path.encode("utf-8") if isinstance(path, str) else path
        lines = [m + b" " + p + b" HTTP/1.1"]
        if host is not None:
            lines.append(b"Host: " + host.encode("latin-1"))
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}".encode("latin-1"))
        if body:
            lines.append(b"Content-Length: %d" % (len(body),))
        self.send(b"\r\n".join(lines) + b"\r\n\r\n" + body, m)
        return self

    @property
    def responses(self) -> list[Response]:
        """
        Every complete response received so far, in order.
        """
        eof = self.lost or self.transport.disconnecting
        return _parse(self.transport.value(), self._methods, eof).responses

    @property
    def response(self) -> Response | None:
        """
        The first complete response, or C{None} while there is none.
        """
        responses = self.responses
        return responses[0] if responses else None

    @property
    def head(self) -> bytes:
        """
        The head of the first response (status line and headers), or
        C{b""} while it has not all come.
        """
        head, sep, _ = self.transport.value().partition(b"\r\n\r\n")
        return head if sep else b""

    @property
    def body_so_far(self) -> bytes:
        """
        The de-chunked body of the first response received so far: for a
        response still arriving, such as a stream.
        """
        _, sep, rest = self.transport.value().partition(b"\r\n\r\n")
        return dechunk(rest)[0] if sep else b""

    @property
    def sse_blocks(self) -> list[list[str]]:
        """
        The complete event-stream blocks received so far (see L{sse_blocks}).
        """
        return sse_blocks(self.body_so_far)

    @property
    def closed_by_server(self) -> bool:
        """
        Whether the server has closed (or aborted) this connection.
        """
        return bool(self.transport.disconnecting or self.transport.disconnected)

    def hold_acknowledgements(self) -> None:
        """
        From now on this client's TCP acknowledges nothing until
        L{acknowledge}: an answer handed over stays delivering, and is
        completed only once acknowledged (or C{answer not acknowledged} if
        the connection ends first).  Without this, an answer in memory
        counts as completed at once, its delivery C{unknown}.
        """
        cast(_Transport, self.transport).hold()

    def acknowledge(self) -> None:
        """
        This client's TCP acknowledges everything received so far; the
        server sees it at its next look (within L{twisted_close._delivery.POLL}
        seconds of the clock).
        """
        transport = cast(_Transport, self.transport)
        transport.acked = transport.written

    def close(self) -> None:
        """
        The client closes the connection cleanly (a FIN).
        """
        self._lose(Failure(ConnectionDone("client closed")))

    def reset(self) -> None:
        """
        The client resets the connection (an RST).
        """
        self._lose(Failure(ConnectionLost("connection reset by peer")))

    def _lose(self, reason: Failure) -> None:
        if not self.lost:
            self.lost = True
            self.transport.connected = False
            cast(_Transport, self.transport).lost(
                reason.check(ConnectionDone) is not None
            )
            self.channel.connectionLost(reason)

    def _notice_close(self) -> None:
        # A server that closes the connection sees it lost, as on a socket.
        if self.transport.disconnecting and not self.lost:
            self._lose(Failure(ConnectionDone("server closed")))


class InMemoryServer:
    """
    A C{Site} served in memory on a C{Clock}.

    @ivar clock: advance it with L{advance} so that closed connections are
        noticed too.
    """

    _ports = itertools.count(40000)

    def __init__(self, root: IResource | Site, clock: Clock | None = None) -> None:
        self.clock = Clock() if clock is None else clock
        if isinstance(root, Site):
            self.site = root
        else:
            self.site = Site(root, reactor=self.clock)
            self.site.displayTracebacks = False
        self.connections: list[Connection] = []

    def connect(self, host: str = "127.0.0.1", port: int | None = None) -> Connection:
        """
        Open a client connection from C{host:port}.
        """
        peer = IPv4Address("TCP", host, next(self._ports) if port is None else port)
        connection = Connection(self, peer)
        self.connections.append(connection)
        return connection

    def get(self, path: str | bytes = "/", method: str | bytes = "GET") -> Connection:
        """
        Open a connection and send one request on it.
        """
        return self.connect().request(path, method)

    def advance(self, seconds: float) -> None:
        """
        Let C{seconds} pass, then notice connections the server closed.
        """
        self.clock.advance(seconds)
        for connection in self.connections:
            connection._notice_close()
