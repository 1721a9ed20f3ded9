"""The bare Twisted "Interrupted Responses" pattern from the twisted.web howto:
a Resource that answers with C{reactor.callLater} and cancels the call from
C{notifyFinish()}'s errback.  Only the counters and C{/stats} the benchmark
reads are added, and the headers closedemo sends.  Same reactor (epoll), and
no access log, as closedemo by default: twisted.web's C{Site.log} formats a
line per request even when nobody observes it.

Usage: python bare_twisted.py PORT
"""

from __future__ import annotations

import json
import sys

from twisted.internet.epollreactor import EPollReactor
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.main import installReactor
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

reactor = EPollReactor()
installReactor(reactor)
counts = {"pending": 0, "completed": 0, "interrupted": 0}


class DelayedResource(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]

    def _delayedRender(self, request: Request) -> None:
        counts["pending"] -= 1
        counts["completed"] += 1
        request.write(b"hello")
        request.finish()

    def _responseFailed(self, err: Failure, call: IDelayedCall) -> None:
        call.cancel()
        counts["pending"] -= 1
        counts["interrupted"] += 1

    def render_GET(self, request: Request) -> bytes | int:
        if request.path == b"/stats":
            body = json.dumps(counts).encode()
            request.setHeader(b"Content-Type", b"application/json")
            request.setHeader(b"Content-Length", b"%d" % len(body))
            return body
        delay = float((request.args or {}).get(b"delay", [b"0"])[0])
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        request.setHeader(b"Content-Length", b"5")
        call = reactor.callLater(delay, self._delayedRender, request)
        counts["pending"] += 1
        request.notifyFinish().addErrback(self._responseFailed, call)
        return NOT_DONE_YET


class QuietSite(Site):
    def log(self, request: Request) -> None:  # type: ignore[override]
        pass


if __name__ == "__main__":
    site = QuietSite(DelayedResource())  # type: ignore[no-untyped-call]
    reactor.listenTCP(int(sys.argv[1]), site, 4096, "127.0.0.1")
    reactor.run()
