"""
A twisted_close resource served from inside an asyncio program.

    python examples/asyncio_embed.py [--port 8080] [--grace 5]

C{asyncio.run(main())} installs Twisted's asyncio reactor on the running
loop, serves an L{AsyncResource} next to the program's own asyncio code (a
task counting ticks, which the answers report), and stops cleanly on
SIGTERM or SIGINT: the port stops accepting, pending answers get C{--grace}
seconds (L{GracefulDrain}), then the program returns from C{main()}.

C{GET /?delay=S} answers after S seconds (C{asyncio.sleep}); a client that
leaves first has its coroutine cancelled and is reported as anywhere else.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort, IReactorTime
from twisted.logger import globalLogBeginner, textFileLogObserver
from twisted.web.iweb import IRequest
from twisted.web.server import Site

from twisted_close import AsyncResource, DelayError, GracefulDrain, Ledger, parse_delay


class Ticks:
    """
    The program's own asyncio work: a counter that goes up every C{every}
    seconds.
    """

    def __init__(self, every: float) -> None:
        self.every = every
        self.count = 0

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            self.count += 1


class Hello(AsyncResource):
    isLeaf = True

    def __init__(self, ticks: Ticks, *, clock: IReactorTime, ledger: Ledger) -> None:
        super().__init__(clock=clock, ledger=ledger)
        self.ticks = ticks

    async def render_GET(self, request: IRequest) -> bytes:
        given = request.args.get(b"delay", [b"0"])
        try:
            delay = parse_delay(given[0].decode("ascii", "replace"), maximum=60)
        except DelayError as e:
            request.setResponseCode(400)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return f"{e}\n".encode()
        await asyncio.sleep(delay)  # asyncio, on the asyncio reactor
        return f"hello after {delay:g} s, at tick {self.ticks.count}\n".encode()


async def main(port: int = 8080, grace: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    from twisted.internet import asyncioreactor

    # Before anything imports twisted.internet.reactor: Twisted then runs on
    # this loop, which asyncio.run() drives; reactor.run() is never called.
    asyncioreactor.install(loop)
    from twisted.internet import reactor

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    clock: Any = reactor
    ledger = Ledger(clock)
    ticks = Ticks(0.1)
    ticking = asyncio.create_task(ticks.run())
    drain = GracefulDrain(ledger, clock, grace)
    drain.startService()  # type: ignore[no-untyped-call]
    site = Site(Hello(ticks, clock=clock, ledger=ledger), reactor=clock)
    listening: IListeningPort = clock.listenTCP(port, site, interface="127.0.0.1")
    print(f"serving on 127.0.0.1:{listening.getHost().port}", flush=True)  # type: ignore[attr-defined]

    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()

    print("stopping", flush=True)
    stopped: Deferred[None] | None = listening.stopListening()
    if stopped is not None:
        await stopped.asFuture(loop)  # no new connections
    await drain.stopService().asFuture(loop)  # the pending answers, drained
    ticking.cancel()
    print(f"stopped after {ticks.count} ticks", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--grace", type=float, default=5.0)
    args = parser.parse_args()
    asyncio.run(main(args.port, args.grace))
