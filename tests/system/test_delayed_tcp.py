"""
The delayed answer over real TCP on 127.0.0.1, on the global reactor: what
the server sees when real clients close (FIN), reset (RST), come in crowds
and pipeline their requests.

Every wait polls a condition with a deadline; no sleep decides a result.
"""

from __future__ import annotations

import socket
import struct
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.internet.interfaces import (
    IListeningPort,
    ISystemHandle,
    ITCPTransport,
)
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.internet.task import deferLater
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.iweb import IRequest
from twisted.web.server import Site

from twisted_close import DelayedResource, Ending, HostCheck, Ledger, Outcome
from twisted_close._connection import ConnectionWatch
from twisted_close._twisted.channel import network_producer
from twisted_close.closedemo.site import DemoRoot, build_site

from ..helpers import get_request
from ..realtcp import clock, fdset, tcp, twisted_test, wait_for


def parse_responses(data: bytes) -> list[tuple[int, bytes]]:
    """
    The complete responses in C{data} as C{(status, body)}; every answer of
    the server under test has a C{Content-Length}.
    """
    responses = []
    while (head_end := data.find(b"\r\n\r\n")) >= 0:
        status_line, *header_lines = data[:head_end].split(b"\r\n")
        length = 0
        for line in header_lines:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        start = head_end + 4
        if len(data) < start + length:
            break
        responses.append(
            (int(status_line.split(b" ")[1]), data[start : start + length])
        )
        data = data[start + length :]
    return responses


class Client(Protocol):
    """
    A client connection that keeps what it receives and how it ended.
    """

    def __init__(self) -> None:
        self.received = b""
        self.reason: Failure | None = None
        self.port = 0

    def connectionMade(self) -> None:
        # The client's own port, which the server reports; kept because the
        # address can no longer be asked once the socket is closed.
        self.port = self.tcp.getHost().port

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.reason = reason

    @property
    def tcp(self) -> ITCPTransport:
        assert self.transport is not None
        return cast(ITCPTransport, self.transport)

    def send(self, data: bytes) -> None:
        self.tcp.write(data)

    def close(self) -> None:
        """
        Leave cleanly: Twisted shuts the socket down (a FIN), then closes it.
        """
        self.tcp.loseConnection()

    def reset(self) -> None:
        """
        Leave with a reset: SO_LINGER (1, 0) and a close without a shutdown.
        """
        handle = cast(socket.socket, cast(ISystemHandle, self.transport).getHandle())
        handle.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # abortConnection() closes without shutdown(); loseConnection() would
        # send a FIN first whatever SO_LINGER says (see the test below).
        self.tcp.abortConnection()


class _Recorder(ProtocolWrapper):
    """
    The server side of one connection, as the transport sees it: the bytes
    the server wrote and the reason it got when the connection went.
    """

    factory: Tracker

    sent = 0

    def write(self, data: bytes) -> None:
        self.sent += len(data)
        super().write(data)

    def writeSequence(self, data: list[bytes]) -> None:
        self.sent += sum(map(len, data))
        super().writeSequence(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.factory.lost.append((self, reason))
        super().connectionLost(reason)


class Tracker(WrappingFactory[_Recorder]):
    """
    Wraps the site to know its live connections and how each one ended.
    """

    protocol = _Recorder

    def __init__(self, site: Site) -> None:
        super().__init__(site)
        self.lost: list[tuple[_Recorder, Failure]] = []

    @property
    def live(self) -> list[_Recorder]:
        return list(self.protocols)


def buffered(connection: _Recorder) -> bytes:
    """
    What the server's channel has read and holds back behind the request in
    flight (Twisted keeps it in the private C{HTTPChannel._dataBuffer}).
    """
    channel = getattr(connection.wrappedProtocol, "_channel", None)
    return b"".join(getattr(channel, "_dataBuffer", []))


def reading(connection: _Recorder) -> bool:
    """
    Whether the reactor is reading the server's socket of C{connection}.
    """
    transport: object = connection.transport
    return any(reader is transport for reader in fdset.getReaders())


class Recording(DelayedResource):
    """
    A L{DelayedResource} that remembers which requests it rendered.
    """

    def __init__(self, delay: float, ledger: Ledger) -> None:
        super().__init__(b"hello", delay, clock=clock, ledger=ledger)
        self.rendered: list[str] = []

    def render(self, request: IRequest) -> bytes | int:
        self.rendered.append(request.path.decode("ascii"))
        return super().render(request)


class Server:
    """
    A site listening on 127.0.0.1, its ledger and the outcomes it reported.
    """

    def __init__(self, site: Site, delayed: DelayedResource) -> None:
        self.site = site
        self.delayed = delayed
        self.ledger = delayed.ledger
        self.outcomes: list[Outcome] = []
        self.ledger.observe(self.outcomes.append)
        self.tracker = Tracker(site)
        self.clients: list[Client] = []
        # 200 clients connect at once: keep them all in the accept queue.
        # WrappingFactory derives from ClientFactory but serves either way.
        factory = cast(ServerFactory, self.tracker)
        self.port: IListeningPort = tcp.listenTCP(
            0, factory, backlog=256, interface="127.0.0.1"
        )

    async def connect(self) -> Client:
        address = cast(IPv4Address, self.port.getHost())
        endpoint = TCP4ClientEndpoint(tcp, "127.0.0.1", address.port)
        client = Client()
        await connectProtocol(endpoint, client)
        self.clients.append(client)
        return client

    def answers_due(self) -> list[object]:
        """
        The answers still scheduled on the reactor by this server.
        """
        return [
            call
            for call in clock.getDelayedCalls()
            if getattr(getattr(call, "func", None), "__self__", None) is self.delayed
        ]

    async def close(self) -> None:
        for client in self.clients:
            if client.reason is None:
                client.tcp.abortConnection()
        stopped = self.port.stopListening()
        if stopped is not None:
            await stopped
        await wait_for(
            lambda: (
                not self.tracker.protocols
                and all(c.reason is not None for c in self.clients)
            ),
            "every connection to close",
        )


@asynccontextmanager
async def serving(
    delayed: DelayedResource, site: Site | None = None
) -> AsyncIterator[Server]:
    """
    Serve C{site} (or C{delayed} alone) until the block ends, then close
    every connection and stop listening, so that the reactor is left clean.
    """
    server = Server(Site(delayed) if site is None else site, delayed)
    try:
        yield server
    finally:
        await server.close()


def demo(delay: float) -> tuple[Site, DelayedResource]:
    site = build_site(clock=clock, ledger=Ledger(), delay=delay)
    return site, cast(DemoRoot, cast(HostCheck, site.resource).resource).delayed


@twisted_test
async def test_clean_close_cancels_the_answer_and_says_client_closed() -> None:
    site, delayed = demo(delay=5)
    async with serving(delayed, site) as server:
        client = await server.connect()
        sent = clock.seconds()
        client.send(get_request("/slow"))
        await wait_for(lambda: server.ledger.pending == 1, "the request to be pending")
        pending_by = clock.seconds()
        await deferLater(clock, 0.3)  # the client stays a while, then leaves
        left = clock.seconds()
        client.close()
        await wait_for(lambda: server.outcomes, "the interruption to be reported")
        seen_by = clock.seconds()

        [outcome] = server.outcomes
        assert outcome.ending is Ending.CLIENT_CLOSED
        assert (outcome.method, outcome.path) == ("GET", "/slow")
        assert outcome.client == f"127.0.0.1:{client.port}"
        assert left - pending_by <= outcome.elapsed <= seen_by - sent
        assert 0.3 <= outcome.elapsed < 2
        # The answer was cancelled: nothing is due, nothing was ever written.
        assert outcome.cancelled == 1
        assert server.answers_due() == []
        assert server.ledger.snapshot() == {
            "pending": 0,
            "completed": 0,
            "interrupted": 1,
            "rejected": 0,
            "server_ended": 0,
        }
        [(connection, reason)] = server.tracker.lost
        assert reason.check(ConnectionDone)
        assert connection.sent == 0
        assert client.received == b""


@twisted_test
async def test_reset_is_told_apart_from_a_clean_close() -> None:
    site, delayed = demo(delay=5)
    async with serving(delayed, site) as server:
        client = await server.connect()
        client.send(get_request("/slow"))
        await wait_for(lambda: server.ledger.pending == 1, "the request to be pending")
        client.reset()
        await wait_for(lambda: server.outcomes, "the interruption to be reported")

        [outcome] = server.outcomes
        assert outcome.ending is Ending.CLIENT_RESET
        assert outcome.reason == "connection reset by the client"
        assert outcome.client == f"127.0.0.1:{client.port}"
        assert outcome.cancelled == 1
        assert server.answers_due() == []
        assert server.ledger.pending == 0
        assert server.ledger.interruptions == {Ending.CLIENT_RESET: 1}
        # What the server's socket saw was a reset: ConnectionLost itself,
        # not a clean ConnectionDone and not the server's own abort.
        [(connection, reason)] = server.tracker.lost
        assert reason.type is ConnectionLost
        assert not reason.check(ConnectionAborted, ConnectionDone)
        assert connection.sent == 0
        # The client's own side only knows it aborted.
        assert client.reason is not None and client.reason.check(ConnectionAborted)


@pytest.mark.skipif(sys.platform != "linux", reason="relies on Linux TCP")
@twisted_test
async def test_so_linger_does_not_turn_lose_connection_into_a_reset() -> None:
    """
    Twisted's loseConnection() calls shutdown() before close(): the FIN goes
    out first, the server reads an end of file, and the RST that SO_LINGER
    (1, 0) adds comes too late to change that.  Only abortConnection() (or a
    bare close() of the socket) makes a client that resets.
    """
    site, delayed = demo(delay=5)
    async with serving(delayed, site) as server:
        client = await server.connect()
        client.send(get_request("/slow"))
        await wait_for(lambda: server.ledger.pending == 1, "the request to be pending")
        handle = cast(socket.socket, cast(ISystemHandle, client.transport).getHandle())
        handle.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        await wait_for(lambda: server.outcomes, "the interruption to be reported")

        [outcome] = server.outcomes
        assert outcome.ending is Ending.CLIENT_CLOSED
        [(_, reason)] = server.tracker.lost
        assert reason.check(ConnectionDone)


@twisted_test
async def test_two_hundred_clients_half_of_them_leave() -> None:
    site, delayed = demo(delay=10)
    async with serving(delayed, site) as server:
        clients: list[Client] = await gatherResults(
            [Deferred.fromCoroutine(server.connect()) for _ in range(200)]
        )
        stayers, leavers = clients[0::2], clients[1::2]
        for i, client in enumerate(stayers):
            client.send(get_request(f"/stay/{i}?delay=2"))
        for i, client in enumerate(leavers):
            client.send(get_request(f"/leave/{i}"))  # the default: 10 s
        await wait_for(
            lambda: server.ledger.pending == 200, "all 200 requests to be pending"
        )
        assert server.ledger.completed == server.ledger.interrupted == 0

        closers, resetters = leavers[0::2], leavers[1::2]
        for client in closers:
            client.close()
        for client in resetters:
            client.reset()
        await wait_for(
            lambda: server.ledger.interrupted == 100, "100 interruptions", timeout=5
        )
        assert server.ledger.completed == 0
        await wait_for(
            lambda: all(parse_responses(c.received) for c in stayers),
            "every staying client to get its answer",
            timeout=5,
        )
        await wait_for(lambda: server.ledger.completed == 100, "100 completions")

        assert server.ledger.snapshot() == {
            "pending": 0,
            "completed": 100,
            "interrupted": 100,
            "rejected": 0,
            "server_ended": 0,
        }
        assert server.ledger.interruptions == {
            Ending.CLIENT_CLOSED: 50,
            Ending.CLIENT_RESET: 50,
        }
        for client in stayers:
            assert parse_responses(client.received) == [(200, b"hello")]
        for client in leavers:
            assert client.received == b""
        # Each client's outcome says how that very client left.
        by_client = {outcome.client: outcome for outcome in server.outcomes}
        assert len(by_client) == len(server.outcomes) == 200
        for client in stayers:
            assert by_client[f"127.0.0.1:{client.port}"].ending is Ending.COMPLETED
        for client in closers:
            outcome = by_client[f"127.0.0.1:{client.port}"]
            assert (outcome.ending, outcome.cancelled) == (Ending.CLIENT_CLOSED, 1)
        for client in resetters:
            outcome = by_client[f"127.0.0.1:{client.port}"]
            assert (outcome.ending, outcome.cancelled) == (Ending.CLIENT_RESET, 1)
        assert server.answers_due() == []


@twisted_test
async def test_pipelined_second_request_is_cancelled_when_the_client_leaves() -> None:
    delayed = Recording(delay=5, ledger=Ledger())
    async with serving(delayed) as server:
        client = await server.connect()
        client.send(get_request("/first?delay=0.1") + get_request("/second?delay=5"))
        await wait_for(
            lambda: parse_responses(client.received), "the first answer", timeout=3
        )
        assert parse_responses(client.received) == [(200, b"hello")]
        # Twisted takes up the second request as soon as the first is done.
        await wait_for(lambda: server.ledger.pending == 1, "the second to be pending")
        assert delayed.rendered == ["/first", "/second"]
        client.reset()
        await wait_for(lambda: len(server.outcomes) == 2, "the second to be reported")

        first, second = server.outcomes
        assert (first.path, first.ending) == ("/first", Ending.COMPLETED)
        assert (second.path, second.ending) == ("/second", Ending.CLIENT_RESET)
        assert second.cancelled == 1
        assert server.answers_due() == []
        assert server.ledger.snapshot() == {
            "pending": 0,
            "completed": 1,
            "interrupted": 1,
            "rejected": 0,
            "server_ended": 0,
        }
        assert parse_responses(client.received) == [(200, b"hello")]


@twisted_test
async def test_a_small_pipeline_does_not_hide_the_client_leaving() -> None:
    """
    While a request is in flight Twisted holds the requests behind it
    unparsed, but it keeps reading the socket (up to
    C{HTTPChannel._optimisticEagerReadSize} buffered bytes), so a client
    that leaves is seen at once.  The queued request is never rendered.
    """
    delayed = Recording(delay=5, ledger=Ledger())
    async with serving(delayed) as server:
        client = await server.connect()
        client.send(get_request("/first?delay=5") + get_request("/second?delay=0.1"))
        await wait_for(lambda: server.ledger.pending == 1, "the first to be pending")
        [connection] = server.tracker.live
        await wait_for(
            lambda: buffered(connection) == get_request("/second?delay=0.1"),
            "the second request to be read and held back",
        )
        assert delayed.rendered == ["/first"]
        assert reading(connection)
        client.reset()
        await wait_for(lambda: not server.tracker.live, "the server to lose it")

        # Nothing can render from a lost connection: this is final.
        assert delayed.rendered == ["/first"]
        [outcome] = server.outcomes
        assert (outcome.path, outcome.ending) == ("/first", Ending.CLIENT_RESET)
        assert outcome.elapsed < 2  # seen when it happened, not after 5 s
        assert server.answers_due() == []
        assert server.ledger.snapshot() == {
            "pending": 0,
            "completed": 0,
            "interrupted": 1,
            "rejected": 0,
            "server_ended": 0,
        }


def count_socket_writes(connection: _Recorder) -> list[int]:
    """
    The sizes of what the server's TCP transport hands its socket from now
    on (its C{writeSomeData}, called when the socket is writable).
    """
    sizes: list[int] = []
    transport: Any = connection.transport
    send = transport.writeSomeData

    def counted(data: bytes) -> object:
        sizes.append(len(data))
        return send(data)

    transport.writeSomeData = counted
    return sizes


def channel_watch(connection: _Recorder) -> ConnectionWatch:
    channel = getattr(connection.wrappedProtocol, "_channel", None)
    watch = network_producer(channel)
    assert isinstance(watch, ConnectionWatch)
    return watch


@pytest.mark.parametrize(
    ("leave", "ending"),
    [("close", Ending.CLIENT_CLOSED), ("reset", Ending.CLIENT_RESET)],
)
@pytest.mark.parametrize(
    "first_delay",
    [
        # Gone long before the answer: seen by the once-a-second look.
        pytest.param(3.0, id="seen-while-paused"),
        # Gone within the last second: seen by the look as the answer ends.
        pytest.param(0.5, id="seen-at-the-answer"),
    ],
)
@twisted_test
async def test_a_paused_channel_still_sees_the_client_leave(
    leave: str, ending: Ending, first_delay: float
) -> None:
    """
    Once more than C{HTTPChannel._optimisticEagerReadSize} bytes of
    pipelined requests are buffered behind the request in flight, Twisted
    stops reading the socket, so it cannot hear the client leave.  The
    socket's TCP state still tells (Linux): the request in hand is reported
    with the client's ending, nothing is answered into the dead socket, and
    no request behind it is rendered or blamed.
    """
    delayed = Recording(delay=5, ledger=Ledger())
    eager = HTTPChannel._optimisticEagerReadSize
    queued = [
        get_request(f"/q{i}?delay=0.2")
        for i in range(2 * eager // len(get_request("/q0")))
    ]
    assert len(b"".join(queued)) > eager
    async with serving(delayed) as server:
        client = await server.connect()
        client.send(get_request(f"/first?delay={first_delay}") + b"".join(queued))
        await wait_for(lambda: server.ledger.pending == 1, "the first to be pending")
        [connection] = server.tracker.live
        await wait_for(lambda: not reading(connection), "the server to stop reading")
        assert channel_watch(connection).polling
        on_the_wire = count_socket_writes(connection)
        started = clock.seconds()
        if leave == "close":
            client.close()
        else:
            client.reset()
        await wait_for(
            lambda: not server.tracker.live and server.ledger.pending == 0,
            "the server to find the client gone",
        )

        [outcome] = server.outcomes
        assert (outcome.path, outcome.ending, outcome.cancelled) == (
            "/first",
            ending,
            0 if first_delay < 1 else 1,
        )
        # Seen within a second or so of leaving, not at some later request.
        assert clock.seconds() - started < 2.5
        assert delayed.rendered == ["/first"]
        # Not a byte of an answer went out: any was dropped unsent.
        assert on_the_wire == []
        # The server dropped it (or the reactor saw the reset first).
        [(_, reason)] = server.tracker.lost
        assert reason.check(ConnectionAborted, ConnectionLost)
        assert server.answers_due() == []
        assert server.ledger.snapshot() == {
            "pending": 0,
            "completed": 0,
            "interrupted": 1,
            "rejected": 0,
            "server_ended": 0,
        }


@twisted_test
async def test_the_look_at_a_paused_channel_stops_when_it_reads_again() -> None:
    delayed = Recording(delay=5, ledger=Ledger())
    eager = HTTPChannel._optimisticEagerReadSize
    body = b"x" * (2 * eager)
    big = (
        b"POST /big HTTP/1.1\r\nHost: localhost\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    ) + body
    async with serving(delayed) as server:
        client = await server.connect()
        client.send(get_request("/first?delay=0.3") + big)
        await wait_for(lambda: server.ledger.pending == 1, "the first to be pending")
        [connection] = server.tracker.live
        await wait_for(lambda: not reading(connection), "the server to stop reading")
        watch = channel_watch(connection)
        assert watch.polling
        await wait_for(
            lambda: len(parse_responses(client.received)) == 2, "both answers"
        )
        assert [status for status, _ in parse_responses(client.received)] == [
            200,
            405,
        ]
        assert reading(connection)
        assert not watch.polling
        # Completed once the client's TCP acknowledged it, a moment later.
        await wait_for(lambda: server.outcomes, "the answer to be acknowledged")
        [outcome] = server.outcomes
        assert outcome.ending is Ending.COMPLETED
