"""
L{AsyncResource} awaiting asyncio things over real TCP on 127.0.0.1, on the
suite's global reactor.

On the asyncio reactor (C{pytest --reactor=asyncio}; C{scripts/check} runs
it) the coroutine runs as an asyncio Task that the client leaving cancels;
on any other reactor the same coroutine is answered C{500} with a one-line
log that names the fix.  Each test skips, saying so, on the reactor it is
not about: C{scripts/check} runs the suite on both.
"""

from __future__ import annotations

import asyncio

import pytest
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import deferLater
from twisted.logger import (
    ILogObserver,
    LogEvent,
    LogLevel,
    formatEvent,
    globalLogPublisher,
)
from twisted.web.iweb import IRequest
from twisted.web.server import Site
from zope.interface import implementer

from twisted_close import AsyncResource, Ending, Ledger, Outcome
from twisted_close._twisted.reactor import asyncio_event_loop

from ..realtcp import clock, tcp, twisted_test, wait_for
from .test_async_tcp import Client

ON_ASYNCIO = asyncio_event_loop(clock) is not None
asyncio_only = pytest.mark.skipif(
    not ON_ASYNCIO, reason="needs the asyncio reactor: pytest --reactor=asyncio"
)
not_on_asyncio = pytest.mark.skipif(
    ON_ASYNCIO, reason="about the other reactors: pytest without --reactor=asyncio"
)


class Nap(AsyncResource):
    """
    GET sleeps 30 s with asyncio, noting when its C{finally} ran.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__(clock=clock, ledger=Ledger(clock))
        self.events: list[str] = []
        self.finally_at: float | None = None

    async def render_GET(self, request: IRequest) -> bytes:
        self.events.append("started")
        try:
            await asyncio.sleep(30)
            return b"rested"
        except asyncio.CancelledError:
            self.events.append("cancelled")
            raise
        finally:
            self.finally_at = clock.seconds()
            self.events.append("finally")


@implementer(ILogObserver)
class Logged:
    def __init__(self) -> None:
        self.events: list[LogEvent] = []

    def __call__(self, event: LogEvent) -> None:
        self.events.append(event)

    def lines(self, level: LogLevel) -> list[str]:
        return [formatEvent(e) for e in self.events if e.get("log_level") is level]


async def serve_and_ask(resource: Nap) -> tuple[Client, object]:
    site = Site(resource, reactor=clock)
    port = tcp.listenTCP(0, site, interface="127.0.0.1")  # type: ignore[arg-type]
    endpoint = TCP4ClientEndpoint(tcp, "127.0.0.1", port.getHost().port)  # type: ignore[attr-defined]
    client = await connectProtocol(endpoint, Client())
    client.tcp.write(b"GET /nap HTTP/1.1\r\nHost: localhost\r\n\r\n")
    return client, port


@asyncio_only
@twisted_test
async def test_the_client_leaving_cancels_an_asyncio_sleep() -> None:
    resource = Nap()
    outcomes: list[Outcome] = []
    resource.ledger.observe(outcomes.append)
    logged = Logged()
    globalLogPublisher.addObserver(logged)
    client, port = await serve_and_ask(resource)
    try:
        await wait_for(lambda: resource.events == ["started"], "the coroutine")
        await deferLater(clock, 0.3)  # the client waits a while, then leaves
        left_at = clock.seconds()
        client.tcp.loseConnection()
        await wait_for(lambda: "finally" in resource.events, "the finally block")
        assert resource.finally_at is not None
        assert resource.finally_at - left_at < 0.05
        await wait_for(lambda: outcomes, "the interruption to be counted")

        assert resource.events == ["started", "cancelled", "finally"]
        [outcome] = outcomes
        assert outcome.ending is Ending.CLIENT_CLOSED
        assert (outcome.path, outcome.cancelled) == ("/nap", 1)
        assert 0.3 <= outcome.elapsed < 5
        assert resource.ledger.snapshot() == {
            "pending": 0,
            "completed": 0,
            "interrupted": 1,
            "rejected": 0,
            "server_ended": 0,
        }
        [line] = [
            line
            for line in logged.lines(LogLevel.info)
            if line.startswith("Connection interrupted: GET /nap from 127.0.0.1:")
        ]
        assert line.endswith(" s while waiting (client closed the connection)")
        assert [e for e in logged.events if "log_failure" in e] == []
        assert client.received == b""
    finally:
        globalLogPublisher.removeObserver(logged)
        await client.closed
        await port.stopListening()  # type: ignore[attr-defined]


@not_on_asyncio
@twisted_test
async def test_an_asyncio_sleep_elsewhere_is_a_500_naming_the_fix() -> None:
    resource = Nap()
    logged = Logged()
    globalLogPublisher.addObserver(logged)
    client, port = await serve_and_ask(resource)
    try:
        await wait_for(lambda: b"\r\n\r\n" in client.received, "the answer")
        assert client.received.startswith(b"HTTP/1.1 500 ")
        assert resource.events == ["started", "finally"]
        [line] = logged.lines(LogLevel.error)
        assert line.startswith("GET /nap from 127.0.0.1:")
        assert "needs the asyncio reactor: run twistd -r asyncio" in line
        assert [e for e in logged.events if "log_failure" in e] == []
        # Completed once the client's TCP acknowledged the 500.
        await wait_for(lambda: resource.ledger.completed == 1, "the acknowledgement")
    finally:
        globalLogPublisher.removeObserver(logged)
        client.tcp.loseConnection()
        await client.closed
        await port.stopListening()  # type: ignore[attr-defined]
