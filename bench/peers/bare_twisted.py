"""The bare Twisted "Interrupted Responses" pattern from the twisted.web howto:
a Resource that answers with C{reactor.callLater} and cancels the call from
C{notifyFinish()}'s errback.  Only the counters and C{/stats} the benchmark
reads are added, and the headers closedemo sends.  Same reactor (epoll), and
no access log, as closedemo by default: twisted.web's C{Site.log} formats a
line per request even when nobody observes it.

With C{--workers N}, N processes each listen on the port with their own
C{SO_REUSEPORT} socket, the kernel spreading connections between them (closedemo
C{--workers N} shares one socket its parent opens instead; this peer keeps the
other design as a ceiling); each still counts in its own
dict, copies it every 5 ms into its slot of memory shared with the others,
and answers C{/stats} with the sum of all slots (and C{workers_serving}, how
many of them have had a request).

Usage: python bare_twisted.py PORT [--workers N]
"""

from __future__ import annotations

import json
import mmap
import os
import signal
import socket
import struct
import sys
from typing import Any

from twisted.internet.epollreactor import EPollReactor
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.main import installReactor
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

HOST = "127.0.0.1"
KEYS = ("pending", "completed", "interrupted")
SLOT = struct.Struct("qqq")
reactor: Any = None  # made in serve(): after any fork, never before
counts = dict.fromkeys(KEYS, 0)


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

    def stats(self) -> dict[str, int]:
        return counts

    def render_GET(self, request: Request) -> bytes | int:
        if request.path == b"/stats":
            body = json.dumps(self.stats()).encode()
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


class SharedResource(DelayedResource):
    """The same resource in one of several processes: C{/stats} sums them."""

    def __init__(self, shared: mmap.mmap, slot: int, slots: int) -> None:
        super().__init__()
        self.shared, self.slot, self.slots = shared, slot, slots

    def publish(self) -> None:
        SLOT.pack_into(self.shared, self.slot * SLOT.size, *counts.values())

    def stats(self) -> dict[str, int]:
        self.publish()
        rows = [SLOT.unpack_from(self.shared, i * SLOT.size) for i in range(self.slots)]
        summed = {k: sum(row[i] for row in rows) for i, k in enumerate(KEYS)}
        # How many workers have had requests: the kernel spreads connections.
        return summed | {"workers_serving": sum(1 for row in rows if any(row))}


class QuietSite(Site):
    def log(self, request: Request) -> None:  # type: ignore[override]
        pass


def reuseport_socket(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((HOST, port))
    return sock


def serve(
    port: int, resource: DelayedResource, listening: socket.socket | None
) -> None:
    global reactor
    reactor = EPollReactor()
    installReactor(reactor)
    site = QuietSite(resource)  # type: ignore[no-untyped-call]
    if listening is None:
        reactor.listenTCP(port, site, 4096, HOST)
    else:
        listening.listen(4096)
        listening.setblocking(False)
        reactor.adoptStreamPort(listening.fileno(), socket.AF_INET, site)
        listening.close()  # the reactor holds its own duplicate
    if isinstance(resource, SharedResource):
        LoopingCall(resource.publish).start(0.005)
    reactor.run()


def serve_workers(port: int, count: int) -> None:
    """Fork C{count} workers, each with its own C{SO_REUSEPORT} listening
    socket; stop them all on SIGTERM, and end when any of them ends.
    """
    held = reuseport_socket(port)  # bound, not listening: it holds the port
    shared = mmap.mmap(-1, SLOT.size * count)
    alive = set()
    for slot in range(count):
        pid = os.fork()
        if pid == 0:
            held.close()
            serve(port, SharedResource(shared, slot, count), reuseport_socket(port))
            os._exit(0)
        alive.add(pid)

    def stop(*_: object) -> None:
        for pid in alive:
            os.kill(pid, signal.SIGTERM)  # not yet reaped: still ours

    signal.signal(signal.SIGTERM, stop)
    alive.discard(os.wait()[0])
    stop()
    while alive:
        alive.discard(os.wait()[0])


if __name__ == "__main__":
    port = int(sys.argv[1])
    if sys.argv[2:3] == ["--workers"]:
        serve_workers(port, int(sys.argv[3]))
    else:
        serve(port, DelayedResource(), None)
