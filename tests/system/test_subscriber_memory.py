"""
What a client that reads nothing can make the server hold, over real
sockets against C{twistd closedemo} in a child process: 64 C{/outcomes}
subscribers that never read (8 loopback addresses), while 2 connections
send C{?delay=0} requests whose paths are 16 KB of control bytes
(percent-encoded).  The
server's memory (RSS, from C{/proc/PID/status}) stays within 100 MB of
where it began, and comes back to within 20 MB once they leave.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from ..twistd_process import LISTEN, Twistd, stats

SUBSCRIBERS = 64
ADDRESSES = [f"127.0.0.{n}" for n in range(2, 10)]
LOAD_SECONDS = 3.0
PIPELINED = 32
# Control bytes, percent-encoded (HTTP/1.1 refuses them raw with 400; the
# path is kept as it came), under twisted.web's 16 KiB head.
CONTROL = b"".join(b"%%%02X" % (b,) for b in range(1, 32))
PATH = b"/" + (CONTROL * 200)[:16000]


def rss(pid: int) -> int:
    """
    The resident memory of process C{pid}, in bytes.
    """
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def subscribe(port: int, source: str) -> socket.socket:
    """
    A GET /outcomes, admitted (its status line read), that reads nothing
    more, ever.
    """
    sock = socket.create_connection(
        ("127.0.0.1", port), timeout=10, source_address=(source, 0)
    )
    sock.sendall(b"GET /outcomes HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert sock.recv(16).startswith(b"HTTP/1.1 200 ")
    return sock


def load(port: int, until: float, answered: list[int]) -> None:
    """
    Pipelined batches of C{?delay=0} requests with the long path, each
    batch's answers read before the next, until C{until}.
    """
    request = b"GET " + PATH + b"?delay=0 HTTP/1.1\r\nHost: localhost\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        while time.monotonic() < until:
            sock.sendall(request * PIPELINED)
            got = b""
            while got.count(b"HTTP/1.1 ") < PIPELINED or not got.endswith(b"hello"):
                data = sock.recv(1 << 16)
                assert data, "the server closed a load connection"
                got += data
            assert got.count(b"HTTP/1.1 200 ") == PIPELINED, got[:300]
            answered.append(PIPELINED)


def test_silent_subscribers_do_not_make_the_server_hold_their_backlog(
    tmp_path: Path,
) -> None:
    server = Twistd(tmp_path, *LISTEN, "--max-pending-per-client", "0")
    try:
        port = server.port()
        pid = server.process.pid
        stats(port)
        before = rss(pid)
        subscribers = [
            subscribe(port, ADDRESSES[n % len(ADDRESSES)]) for n in range(SUBSCRIBERS)
        ]
        answered: list[int] = []
        until = time.monotonic() + LOAD_SECONDS
        loaders = [
            threading.Thread(target=load, args=(port, until, answered))
            for _ in range(2)
        ]
        for thread in loaders:
            thread.start()
        peak = before
        while any(thread.is_alive() for thread in loaders):
            peak = max(peak, rss(pid))
            time.sleep(0.05)
        for thread in loaders:
            thread.join()
        assert sum(answered) > 100, "the load did not get through"
        for sock in subscribers:
            sock.close()
        counters = stats(port)
        # Memory comes back once they are gone (the server notices at once).
        deadline = time.monotonic() + 5
        after = rss(pid)
        while after - before > 20 * 2**20 and time.monotonic() < deadline:
            time.sleep(0.1)
            after = rss(pid)
        print(
            f"RSS before {before / 2**20:.1f} MB, peak {peak / 2**20:.1f} MB, "
            f"after {after / 2**20:.1f} MB; {sum(answered)} answered; {counters}"
        )
        assert peak - before < 100 * 2**20
        assert after - before < 20 * 2**20
    finally:
        server.kill()
