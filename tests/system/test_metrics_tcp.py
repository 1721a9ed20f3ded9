"""
C{/metrics} through prometheus-client's own Twisted resource, on a real
socket (it answers from the reactor's thread pool).
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import maybeDeferred
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

from twisted_close import Ledger
from twisted_close.closedemo.site import build_site
from twisted_close.metrics import metrics_registry, metrics_resource

from ..realtcp import tcp, twisted_test, wait_for


@twisted_test
async def test_metrics_are_served_from_the_ledger() -> None:
    ledger = Ledger(reactor)
    site = build_site(
        clock=reactor,
        ledger=ledger,
        metrics=metrics_resource(metrics_registry(ledger)),
    )
    port = tcp.listenTCP(0, site, interface="127.0.0.1")  # type: ignore[arg-type]
    address = port.getHost()
    assert isinstance(address, IPv4Address)
    base = f"http://127.0.0.1:{address.port}"
    pool = HTTPConnectionPool(reactor)
    agent = Agent(reactor, pool=pool)
    try:
        done = await agent.request(b"GET", f"{base}/?delay=0".encode())
        await readBody(done)
        # Completed once the client's TCP acknowledged it, a moment later.
        await wait_for(lambda: ledger.completed == 1, "the acknowledgement")
        response = await agent.request(b"GET", f"{base}/metrics".encode(), Headers({}))
        body = (await readBody(response)).decode()
    finally:
        await maybeDeferred(port.stopListening)
        await pool.closeCachedConnections()
    assert response.code == 200
    assert response.headers.getRawHeaders(b"content-type")[0].startswith(b"text/plain")
    assert "twisted_close_requests_completed_total 1.0\n" in body
    assert "twisted_close_requests_pending 0.0\n" in body
