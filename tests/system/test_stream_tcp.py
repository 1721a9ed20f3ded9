"""
L{EventStreamResource} over real TCP on 127.0.0.1 with the global reactor:
a client that leaves, and a client that does not read.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Coroutine
from typing import Any, cast

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IListeningPort, IReactorTCP, IReactorTime
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.python.failure import Failure
from twisted.web.server import Site

from twisted_close import Ending, EventStream, EventStreamResource, Ledger, Outcome

from ..realtcp import twisted_test, wait_for

AsyncTest = Callable[[], Coroutine[Any, Any, None]]
TIMEOUT = 5.0


def reactor() -> Any:
    from twisted.internet import reactor as _reactor

    return _reactor


def stream_calls(stream: EventStream) -> list[str]:
    """
    The names of the stream's calls pending on the global reactor.
    """
    funcs = [
        getattr(call, "func", None)
        for call in cast(IReactorTime, reactor()).getDelayedCalls()
    ]
    return [
        getattr(func, "__name__", "?")
        for func in funcs
        if getattr(func, "__self__", None) is stream
    ]


def outcomes(ledger: Ledger) -> list[Outcome]:
    seen: list[Outcome] = []
    ledger.observe(seen.append)
    return seen


def listen(resource: EventStreamResource) -> tuple[IListeningPort, int]:
    site = cast(ServerFactory, Site(resource, reactor=reactor()))
    port = cast(IReactorTCP, reactor()).listenTCP(0, site, interface="127.0.0.1")
    return port, cast(IPv4Address, port.getHost()).port


async def stop(port: IListeningPort) -> None:
    stopping = port.stopListening()
    if stopping is not None:
        await stopping


class LeavingClient(Protocol):
    """
    Reads C{want} events, then closes the connection (a FIN).
    """

    def __init__(self, want: int) -> None:
        self.want = want
        self.received = b""
        self.seen_when_leaving = 0
        self.lost: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        seen = self.received.count(b"\ndata: ")
        if seen >= self.want and not self.seen_when_leaving:
            self.seen_when_leaving = seen
            assert self.transport is not None
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:  # noqa: B008
        self.lost.callback(None)


@twisted_test
async def test_client_that_leaves_after_three_events_is_reported() -> None:
    ledger = Ledger()
    seen = outcomes(ledger)
    resource = EventStreamResource(
        tick=0.05, heartbeat=10.0, clock=reactor(), ledger=ledger
    )
    port, number = listen(resource)
    try:
        endpoint = TCP4ClientEndpoint(reactor(), "127.0.0.1", number)
        client = await connectProtocol(endpoint, LeavingClient(3))
        await wait_for(lambda: bool(resource.streams), "the stream to begin")
        [stream] = resource.streams
        await wait_for(lambda: bool(seen), "the interruption to be reported")
        await client.lost
    finally:
        await stop(port)

    [outcome] = seen
    assert outcome.ending is Ending.CLIENT_CLOSED
    assert outcome.method == "GET" and outcome.path == "/events"
    # The server may write an event or two between the client's read of the
    # third and its FIN arriving: the report counts what the server wrote.
    assert client.seen_when_leaving >= 3
    assert stream.sent >= client.seen_when_leaving
    assert outcome.detail == f"{stream.sent} events sent"
    assert stream.closed and resource.streams == []
    assert stream_calls(stream) == []
    assert ledger.snapshot() == {
        "pending": 0,
        "completed": 0,
        "interrupted": 1,
        "rejected": 0,
        "server_ended": 0,
    }


def server_transport(stream: EventStream) -> Any:
    """
    The server's TCP transport for C{stream} (IRequest does not name it).
    """
    return cast(Any, stream.request).transport


def buffered(stream: EventStream) -> int:
    """
    Bytes waiting in the server transport's user-space write buffer.
    """
    transport = server_transport(stream)
    return int(len(transport.dataBuffer) - transport.offset + transport._tempDataLen)


@twisted_test
async def test_slow_reader_pauses_the_stream_and_buffers_stay_bounded() -> None:
    event = "x" * 30_000  # a few events fill the 64 KiB buffer
    tick = 0.01
    bound = 1 << 20
    ledger = Ledger()
    seen = outcomes(ledger)
    resource = EventStreamResource(
        lambda n, now: event, tick, heartbeat=0.05, clock=reactor(), ledger=ledger
    )
    port, number = listen(resource)
    # A client that never reads, with small kernel buffers on both sides.
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        client.connect(("127.0.0.1", number))
        client.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await wait_for(lambda: bool(resource.streams), "the stream to begin")
        [stream] = resource.streams
        handle = server_transport(stream).getHandle()
        handle.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

        largest = 0

        def paused_and_bounded() -> bool:
            nonlocal largest
            largest = max(largest, buffered(stream))
            return stream.paused

        await wait_for(paused_and_bounded, "the transport to pause the stream")
        assert stream_calls(stream) == []  # neither ticker nor heartbeat
        sent = stream.sent
        # Let 50 ticks' worth of time pass: unpaused, that would be 1.5 MB.
        clock = cast(IReactorTime, reactor())
        later = clock.seconds() + 50 * tick
        await wait_for(lambda: paused_and_bounded() and clock.seconds() > later, "time")
        assert stream.paused
        assert stream.sent == sent
        assert 0 < largest < bound, largest
        assert seen == []

        # The client leaves abruptly: SO_LINGER 0 makes close() send a RST.
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        await wait_for(lambda: bool(seen), "the interruption to be reported")
    finally:
        client.close()
        await stop(port)

    [outcome] = seen
    assert outcome.ending is Ending.CLIENT_RESET
    assert outcome.detail == f"{sent} event{'' if sent == 1 else 's'} sent"
    assert stream.closed
    assert stream_calls(stream) == []
    assert ledger.pending == 0 and ledger.interrupted == 1
