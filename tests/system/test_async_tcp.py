"""
L{AsyncResource} over real TCP on 127.0.0.1, on the global reactor: a client
that aborts its connection cancels the coroutine awaiting on its behalf.

Every wait polls a condition with a deadline; no sleep decides a result.
"""

from __future__ import annotations

from typing import cast

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.server import Site

from twisted_close import AsyncResource, Ending, Ledger, Outcome

from ..realtcp import clock, tcp, twisted_test, wait_for


class Slow(AsyncResource):
    """
    Answers after 30 s, and says how far its coroutine got.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__(clock=clock, ledger=Ledger())
        self.events: list[str] = []
        self.waits: list[Deferred[None]] = []

    def due(self) -> list[object]:
        """
        The delayed calls behind our waits still scheduled on the reactor.
        """
        return [
            call
            for call in clock.getDelayedCalls()
            if any(getattr(call.func, "__self__", None) is w for w in self.waits)  # type: ignore[attr-defined]
        ]

    async def render_GET(self, request: IRequest) -> bytes:
        self.events.append("started")
        wait = deferLater(clock, 30, lambda: None)
        self.waits.append(wait)
        try:
            await wait
            return b"too slow"
        except CancelledError:
            self.events.append("cancelled")
            raise
        finally:
            self.events.append("finally")


class Client(Protocol):
    def __init__(self) -> None:
        self.received = b""
        self.reason: Failure | None = None
        self.closed: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.reason = reason
        self.closed.callback(None)

    @property
    def tcp(self) -> ITCPTransport:
        assert self.transport is not None
        return cast(ITCPTransport, self.transport)


@twisted_test
async def test_an_aborting_client_cancels_the_coroutine() -> None:
    resource = Slow()
    outcomes: list[Outcome] = []
    resource.ledger.observe(outcomes.append)
    site = Site(resource, reactor=clock)
    port = tcp.listenTCP(0, site, interface="127.0.0.1")  # type: ignore[arg-type]
    client: Client | None = None
    try:
        address = port.getHost()
        endpoint = TCP4ClientEndpoint(tcp, "127.0.0.1", address.port)  # type: ignore[attr-defined]
        client = await connectProtocol(endpoint, Client())
        client.tcp.write(b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n")
        await wait_for(lambda: resource.events == ["started"], "the coroutine to start")
        assert resource.ledger.pending == 1
        assert len(resource.due()) == 1

        client.tcp.abortConnection()
        await wait_for(lambda: outcomes, "the interruption to be reported")
        await wait_for(lambda: "finally" in resource.events, "the finally block")

        assert resource.events == ["started", "cancelled", "finally"]
        [outcome] = outcomes
        # abortConnection() closes with SO_LINGER (1, 0): the server reads a
        # reset (ConnectionLost), not an end of file.
        assert outcome.ending is Ending.CLIENT_RESET
        assert (outcome.method, outcome.path, outcome.cancelled) == ("GET", "/slow", 1)
        assert outcome.elapsed < 5  # seen when it happened, not after 30 s
        assert resource.ledger.snapshot() == {
            "pending": 0,
            "completed": 0,
            "interrupted": 1,
            "rejected": 0,
            "server_ended": 0,
        }
        assert client.received == b""
        # The 30 s wait was cancelled with the coroutine: nothing of ours is
        # left on the reactor.
        assert resource.due() == []
    finally:
        if client is not None:
            if not client.closed.called:
                client.tcp.abortConnection()
            await client.closed
        stopped = port.stopListening()
        if stopped is not None:
            await stopped
