"""
A resource whose slow part is another HTTP service: when its client leaves,
the call upstream is cancelled, its connection closed, and the upstream
server sees its own client (us) go.

    python examples/calling_a_service.py http://127.0.0.1:1337
    python examples/calling_a_service.py http://127.0.0.1:1337 --client aiohttp

Every GET is passed on to the upstream with the same path and query, over
kept-alive connections (treq's pool, or one aiohttp session), and its answer
is passed back.  treq runs on any reactor (C{--reactor asyncio} to choose
asyncio's); aiohttp needs the asyncio reactor, which C{--client aiohttp}
installs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import globalLogBeginner, textFileLogObserver
from twisted.web.http_headers import Headers
from twisted.web.iweb import IRequest

from twisted_close import AsyncResource, Ledger, read_body

try:
    # With the otel extra, the call carries our trace on (traceparent).
    from twisted_close.otel import trace_headers
except ImportError:

    def trace_headers() -> Headers:
        return Headers()


class TreqRelay(AsyncResource):
    """
    Passes each GET on with treq, on any reactor.
    """

    isLeaf = True

    def __init__(self, upstream: str, *, clock: IReactorTime, ledger: Ledger) -> None:
        from twisted.web.client import HTTPConnectionPool

        super().__init__(clock=clock, ledger=ledger)
        self.upstream = upstream
        self.pool = HTTPConnectionPool(clock)  # persistent connections

    async def render_GET(self, request: IRequest) -> bytes:
        import treq

        # Awaiting treq's Deferred ties the call to our client: if it leaves,
        # the Deferred is cancelled and treq aborts the connection upstream.
        url = self.upstream + request.uri.decode()
        response = await treq.get(url, headers=trace_headers(), pool=self.pool)
        request.setResponseCode(response.code)
        # Not response.content(): cancelled, it would leave the body coming.
        return await read_body(response)


class AiohttpRelay(AsyncResource):
    """
    Passes each GET on with aiohttp's client, on the asyncio reactor.
    """

    isLeaf = True

    def __init__(self, upstream: str, *, clock: IReactorTime, ledger: Ledger) -> None:
        super().__init__(clock=clock, ledger=ledger)
        self.upstream = upstream
        self.session: Any = None

    async def render_GET(self, request: IRequest) -> bytes:
        import aiohttp

        if self.session is None:  # made on the running loop, then kept
            self.session = aiohttp.ClientSession()
        # The coroutine runs as an asyncio Task: if our client leaves, the
        # Task is cancelled at this await and aiohttp closes the connection.
        async with self.session.get(self.upstream + request.uri.decode()) as response:
            request.setResponseCode(response.status)
            body: bytes = await response.read()
            return body

    def close(self) -> Deferred[None] | None:
        """
        Close the session (at shutdown), if one was made.
        """
        if self.session is None:
            return None
        return Deferred.fromFuture(asyncio.ensure_future(self.session.close()))


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("upstream", help="base URL of the service called")
    parser.add_argument("--client", choices=["treq", "aiohttp"], default="treq")
    parser.add_argument("--listen", default="tcp:8080:interface=127.0.0.1")
    parser.add_argument(
        "--reactor",
        choices=["default", "asyncio"],
        default="default",
        help="the reactor (aiohttp always runs on asyncio's)",
    )
    args = parser.parse_args(argv)
    if args.client == "aiohttp" or args.reactor == "asyncio":
        from twisted.internet import asyncioreactor

        asyncioreactor.install()

    from twisted.internet import endpoints, reactor
    from twisted.web.server import Site

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    clock: Any = reactor
    ledger = Ledger(clock)
    upstream = args.upstream.rstrip("/")
    if args.client == "treq":
        relay: AsyncResource = TreqRelay(upstream, clock=clock, ledger=ledger)
    else:
        relay = aiohttp_relay = AiohttpRelay(upstream, clock=clock, ledger=ledger)
        reactor.addSystemEventTrigger("before", "shutdown", aiohttp_relay.close)
    site = Site(relay)

    def listening(port: Any) -> None:
        address = port.getHost()
        print(f"relay listening on {address.host}:{address.port}", flush=True)

    def failed(reason: Any) -> None:
        print(f"cannot listen: {reason.getErrorMessage()}", file=sys.stderr)
        reactor.stop()

    endpoint = endpoints.serverFromString(reactor, args.listen)
    endpoint.listen(site).addCallbacks(listening, failed)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1:])
