"""
Faults from the real network, against the real kernel and C{twistd
closedemo}: a client in its own network namespace whose link goes down
mid-stream and mid-wait, a client that trickles its request, and a server
short of file descriptors.

The namespace tests need root and iproute2 (CI runs as root); where a
namespace cannot be made they skip and say why.  Every load is bounded in
count and time, and everything made is removed afterwards.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from ..helpers import TLSFiles
from ..realtcp import twisted_test
from ..twistd_process import (
    Twistd,
    http_get,
    phases,
    started_in,
    stats,
    wait_until,
)
from .test_h2 import serving, tls  # noqa: F401 (tls: a fixture)

PEER_TIMEOUT = 3.0
HEARTBEAT = 1.0
SLACK = 1.5
"""Seconds allowed on top for the log line to be written and read."""


@dataclass
class Link:
    """
    A veth pair: the server's end in this namespace, the client's in its own.
    """

    namespace: str
    server_end: str
    client_end: str
    server_ip: str
    client_ip: str

    def run(self, *argv: str) -> subprocess.Popen[str]:
        """
        Run C{argv} in the client's namespace, its output piped.
        """
        return subprocess.Popen(
            ["ip", "netns", "exec", self.namespace, *argv],
            text=True,
            stdout=subprocess.PIPE,
        )

    def down(self) -> None:
        _ip(
            "netns",
            "exec",
            self.namespace,
            "ip",
            "link",
            "set",
            self.client_end,
            "down",
        )


def _ip(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", *argv], capture_output=True, text=True, timeout=10, check=True
    )


@pytest.fixture
def link() -> Iterator[Link]:
    """
    A client namespace joined to this one by a veth pair, both named with a
    prefix of our own; removed afterwards.
    """
    if shutil.which("ip") is None:
        pytest.skip("network namespaces: iproute2 ('ip') is not installed")
    if os.geteuid() != 0:
        pytest.skip("network namespaces: making them needs root")
    tag = str(os.getpid() % 100000)
    # A /30 of 10.210.0.0/16 of our own, from the process id.
    index = os.getpid() % 16384
    base = f"10.210.{index // 64}.{(index % 64) * 4}"
    prefix = base.rsplit(".", 1)[0]
    last = int(base.rsplit(".", 1)[1])
    made = Link(
        namespace=f"tc10-{tag}",
        server_end=f"tc10s{tag}",
        client_end=f"tc10c{tag}",
        server_ip=f"{prefix}.{last + 1}",
        client_ip=f"{prefix}.{last + 2}",
    )
    steps = [
        ("netns", "add", made.namespace),
        ("link", "add", made.server_end, "type", "veth",
         "peer", "name", made.client_end),
        ("link", "set", made.client_end, "netns", made.namespace),
        ("addr", "add", f"{made.server_ip}/30", "dev", made.server_end),
        ("link", "set", made.server_end, "up"),
        ("netns", "exec", made.namespace, "ip", "addr", "add", f"{made.client_ip}/30",
         "dev", made.client_end),
        ("netns", "exec", made.namespace, "ip", "link", "set", made.client_end, "up"),
    ]  # fmt: skip
    try:
        try:
            for step in steps:
                _ip(*step)
        except subprocess.CalledProcessError as e:
            pytest.skip(f"network namespaces cannot be made here: {e.stderr.strip()}")
        yield made
    finally:
        subprocess.run(["ip", "link", "del", made.server_end], capture_output=True)
        subprocess.run(["ip", "netns", "del", made.namespace], capture_output=True)


@pytest.fixture
def closedemo(tmp_path: Path) -> Iterator[Callable[..., Twistd]]:
    with started_in(tmp_path) as start:

        def start_limited(
            *options: str, limits: tuple[int, int] | None = None
        ) -> Twistd:
            def lower() -> None:
                if limits is not None:
                    resource.setrlimit(resource.RLIMIT_NOFILE, limits)

            return start(*options, preexec_fn=lower)

        yield start_limited


def listening(server: Twistd, host: str) -> int:
    match = server.wait_for_line(
        rf"closedemo listening on {re.escape(host)}:(\d+) ", timeout=30
    )
    return int(match.group(1))


# The client: opens a pending request and an event stream, waits for the
# stream's first bytes, says so, then holds both until it is killed.
CLIENT = """
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
held = []
for path in sys.argv[3:]:
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(b"GET " + path.encode() + b" HTTP/1.1\\r\\nHost: localhost\\r\\n\\r\\n")
    held.append(s)
held[-1].recv(100)
print("ready", flush=True)
time.sleep(60)
"""


def test_vanished_peers_are_reported_within_the_peer_timeout(
    link: Link, closedemo: Callable[..., Twistd]
) -> None:
    server = closedemo(
        "--listen", f"tcp:0:interface={link.server_ip}",
        "--listen", "tcp:0:interface=127.0.0.1",
        "--peer-timeout", f"{PEER_TIMEOUT:g}",
        "--heartbeat", f"{HEARTBEAT:g}",
    )  # fmt: skip
    port = listening(server, link.server_ip)
    control = listening(server, "127.0.0.1")
    client = link.run(
        sys.executable, "-c", CLIENT, link.server_ip, str(port),
        "/?delay=50", "/events",
    )  # fmt: skip
    try:
        assert client.stdout is not None
        assert client.stdout.readline().strip() == "ready"
        wait_until(lambda: stats(control)["pending"] == 2, "both requests pending")
        link.down()
        gone = time.monotonic()
        pending = server.wait_for_line(
            r"Connection interrupted: GET / from "
            rf"{re.escape(link.client_ip)}:\d+ after [\d.]+ s while waiting "
            r"\(peer stopped responding\)$",
            timeout=PEER_TIMEOUT + 10,
        )
        pending_after = time.monotonic() - gone
        stream = server.wait_for_line(
            r"Connection interrupted: GET /events from "
            rf"{re.escape(link.client_ip)}:\d+ after [\d.]+ s while answering "
            r"\(peer stopped responding; \d+ events sent\)$",
            timeout=PEER_TIMEOUT + HEARTBEAT + 10,
        )
        stream_after = time.monotonic() - gone
    finally:
        client.kill()
        client.wait(timeout=10)
    assert pending and stream
    assert pending_after <= PEER_TIMEOUT + SLACK, pending_after
    assert stream_after <= PEER_TIMEOUT + HEARTBEAT + SLACK, stream_after
    assert stats(control) == {
        "pending": 0,
        "completed": 0,
        "interrupted": 2,
        "rejected": 0,
        "server_ended": 0,
    }
    assert "client closed the connection" not in server.output
    assert "Traceback" not in server.output


def test_a_trickling_client_is_cut_at_the_read_timeout(
    closedemo: Callable[..., Twistd],
) -> None:
    server = closedemo(
        "--listen", "tcp:0:interface=127.0.0.1", "--read-timeout", "3"
    )  # fmt: skip
    port = listening(server, "127.0.0.1")
    answered = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as trickle:
        trickle.sendall(b"GET /slow HTTP/1.1\r\n")
        start = time.monotonic()
        trickle.setblocking(False)
        reply = b""
        for n in range(10):
            # A header line a second; a well-behaved client meanwhile.
            deadline = time.monotonic() + 1
            while time.monotonic() < deadline:
                assert http_get(port, "/?delay=0") == (200, b"hello")
                answered += 1
                time.sleep(0.2)
            try:
                trickle.sendall(b"X-Line-%d: 1\r\n" % (n,))
                reply += trickle.recv(1000)
            except (BlockingIOError, ConnectionError):
                pass
            if reply:
                break
        cut_after = time.monotonic() - start
        trickle.settimeout(5)
        while not reply.endswith(b"\n") or b"\r\n\r\n" not in reply:
            chunk = trickle.recv(1000)
            if not chunk:
                break
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 408 "), reply
    assert reply.endswith(b"\r\n\r\nrequest not received within 3 s\n"), reply
    assert 3 <= cut_after <= 3 + SLACK, cut_after
    assert answered >= 10
    assert stats(port)["rejected"] == 1


def test_a_low_soft_limit_is_lifted_at_start(
    closedemo: Callable[..., Twistd],
) -> None:
    server = closedemo(
        "--listen", "tcp:0:interface=127.0.0.1", "--max-pending", "5000",
        limits=(64, 1024),
    )  # fmt: skip
    line = server.wait_for_line(
        r"File descriptors: soft limit 1024 \(raised from 64\); "
        r"room for (\d+) connections$",
        timeout=30,
    )
    room = int(line.group(1))
    assert 900 < room < 1024 - 16
    server.wait_for_line(
        rf"--max-pending 5000 cannot be held: {room} connections fit in 1024 "
        r"descriptors"
    )
    limits = Path(f"/proc/{server.process.pid}/limits").read_text()
    assert re.search(r"Max open files\s+1024\s+1024", limits), limits


def flood(port: int, count: int, request: bytes) -> list[socket.socket]:
    held = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        if request:
            try:
                s.sendall(request)
            except OSError:
                pass  # turned away at once
        held.append(s)
    return held


def lines(server: Twistd, text: str) -> list[str]:
    return [line for line in server.output.splitlines() if text in line]


HARD = 256
"""The hard descriptor limit of the flooded server: a flood of 400
connections, bounded, shows what the issue's 1,500 against 1,024 would."""


def test_a_flood_of_idle_connections_past_the_limit_leaves_it_reachable(
    closedemo: Callable[..., Twistd],
) -> None:
    # One address floods: no cap on its connections, the room is what holds.
    server = closedemo(
        "--listen", "tcp:0:interface=127.0.0.1", "--max-pending", "100",
        "--max-connections-per-client", "0", limits=(HARD, HARD),
    )  # fmt: skip
    port = listening(server, "127.0.0.1")
    server.wait_for_line(r"File descriptors: soft limit 256;")
    start = time.monotonic()
    held: list[socket.socket] = []
    try:
        for round in range(8):
            # Idle connections and heads sent a line at a time.
            held += flood(port, 25, b"")
            held += flood(port, 25, b"GET / HTTP/1.1\r\n")
            assert http_get(port, "/?delay=0") == (200, b"hello"), round
        took = time.monotonic() - start
        wait_until(lambda: bool(lines(server, "Descriptors short")), "a freeing")
        freeing = lines(server, "Descriptors short")
        assert 1 <= len(freeing) <= took + 2, freeing
        # Twisted's own line per failed accept is not there.
        assert not lines(server, "EMFILE recovery")
        assert len(lines(server, "Out of descriptors")) <= took + 2
    finally:
        for s in held:
            s.close()
    assert http_get(port, "/?delay=0") == (200, b"hello")
    assert "Traceback" not in server.output


def test_a_flood_of_pending_requests_is_held_to_the_room_and_passes(
    closedemo: Callable[..., Twistd],
) -> None:
    # One client address sends the whole flood: no per-client cap here.
    server = closedemo(
        "--listen", "tcp:0:interface=127.0.0.1", "--max-pending", "1000",
        "--max-pending-per-client", "0", "--max-connections-per-client", "0",
        limits=(HARD, HARD),
    )  # fmt: skip
    port = listening(server, "127.0.0.1")
    room = int(server.wait_for_line(r"soft limit 256; room for (\d+) ").group(1))
    start = time.monotonic()
    # Pending answers are never closed to make room; clients that have not
    # been read yet are, as nginx does, so that accept never fails.
    held = flood(port, 400, b"GET /?delay=60 HTTP/1.1\r\nHost: localhost\r\n\r\n")
    try:
        wait_until(lambda: bool(lines(server, "Descriptors short")), "a freeing")
        took = time.monotonic() - start
        assert 1 <= len(lines(server, "Descriptors short")) <= took + 2
        assert not lines(server, "EMFILE")
        assert "Traceback" not in server.output
    finally:
        for s in held:
            s.close()

    # Once they leave, it serves again.
    def serves() -> bool:
        try:
            return http_get(port, "/?delay=0") == (200, b"hello")
        except OSError:
            return False

    wait_until(serves, "the server to serve again", timeout=10)
    wait_until(lambda: stats(port)["pending"] == 0, "the flood to be gone")
    # Every pending answer was held to the end, as many as there was room
    # for; more may be, never more than were sent: as the flood's clients
    # close, the backlog's connections are accepted and read into the room
    # they free, then found closed too.
    assert room - 32 <= stats(port)["interrupted"] <= 400


# A server whose descriptors are all taken by something else (files it
# opened), so that accept itself fails with EMFILE: it holds them until a
# line arrives on stdin, and stops when stdin ends.
FULL = """
import os, sys
from twisted.internet import reactor, stdio
from twisted.internet.protocol import Protocol
from twisted.logger import globalLogBeginner, textFileLogObserver
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data
from twisted_close import guard_connections

globalLogBeginner.beginLoggingTo(
    [textFileLogObserver(sys.stdout)], redirectStandardIO=False
)
root = Resource()
root.putChild(b"", Data(b"hello", "text/plain"))
site = Site(root)
guard = guard_connections(site)
port = reactor.listenTCP(0, site, interface="127.0.0.1")
guard.watch_port(port)
fillers = []

class Control(Protocol):
    def dataReceived(self, data):
        for fd in fillers:
            os.close(fd)
        fillers.clear()
        print("freed", flush=True)

    def connectionLost(self, reason):
        # Past the second the last summary line waits for.
        reactor.callLater(1.5, reactor.stop)

def fill():
    while True:
        try:
            fillers.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            break
    print("full", port.getHost().port, flush=True)

stdio.StandardIO(Control())
reactor.callWhenRunning(fill)
reactor.run()
"""


def test_failed_accepts_cost_a_line_a_second_and_end_when_descriptors_free(
    tmp_path: Path,
) -> None:
    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (HARD, HARD))

    process = subprocess.Popen(
        [sys.executable, "-c", FULL],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lower,
    )
    try:
        assert process.stdin is not None and process.stdout is not None
        output: list[str] = []
        while not (line := process.stdout.readline()).startswith("full"):
            assert line, "".join(output)
            output.append(line)
        port = int(line.split()[1])
        start = time.monotonic()
        turned_away = 0
        for _ in range(200):
            try:
                http_get(port, "/")
            except OSError:
                turned_away += 1
        took = time.monotonic() - start
        assert turned_away == 200
        process.stdin.write("free\n")
        process.stdin.flush()
        while not (line := process.stdout.readline()).startswith("freed"):
            assert line, "".join(output)
            output.append(line)
        assert http_get(port, "/") == (200, b"hello")
        out, _ = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)
    log = "".join(output) + out
    summaries = re.findall(
        r"Out of descriptors: (\d+) connections could not be accepted", log
    )
    assert 1 <= len(summaries) <= took + 2, log
    assert sum(map(int, summaries)) == 200, log
    # Twisted's own lines, one to three per failed accept, are not there.
    assert "EMFILE recovery" not in log and "EMFILE encountered" not in log, log


@pytest.fixture
def certificate(tls: TLSFiles) -> TLSFiles:  # noqa: F811 (the fixture)
    return tls


@twisted_test
async def test_http2_over_tls_connections_get_the_peer_timeout(
    certificate: TLSFiles,
) -> None:
    async with serving(certificate) as server:
        client = await server.connect()
        assert getattr(client.tls, "negotiatedProtocol", None) == b"h2"
        [connection] = server.open_connections()
        sock = cast(socket.socket, cast(Any, connection).getHandle())
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 15
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 29750


# The client of the delivery tests: one request, then it holds the
# connection (reading nothing) until it is killed.
ASKER = """
import socket, ssl, sys, time
host, port, scheme = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.create_connection((host, port), timeout=10)
if scheme == "ssl":
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    s = context.wrap_socket(s, server_hostname="localhost")
s.sendall(b"GET /due?delay=1 HTTP/1.1\\r\\nHost: localhost\\r\\n\\r\\n")
print("asked", flush=True)
if sys.argv[4:] == ["read"]:
    print(s.recv(65536)[:12].decode(), flush=True)
time.sleep(60)
"""


def _serve_on(
    link: Link,
    closedemo: Callable[..., Twistd],
    certificate: TLSFiles,
    scheme: str,
) -> tuple[Twistd, int, int]:
    """
    closedemo on the link (plain TCP, or TLS with HTTP/2 offered) with the
    peer timeout, and on loopback for /stats: the server, both ports.
    """
    listen = (
        f"tcp:0:interface={link.server_ip}"
        if scheme == "tcp"
        else certificate.listen.replace(
            "interface=127.0.0.1", f"interface={link.server_ip}"
        )
    )
    server = closedemo(
        "--listen", listen,
        "--listen", "tcp:0:interface=127.0.0.1",
        "--peer-timeout", f"{PEER_TIMEOUT:g}",
    )  # fmt: skip
    return server, listening(server, link.server_ip), listening(server, "127.0.0.1")


def _pull_before_due(link: Link, server: Twistd) -> float:
    """
    Pull the link a moment before a 1 s answer is due; wait for it to be
    reported as not acknowledged; say how long after its due time.
    """
    link.down()
    due = time.monotonic() + 1.0
    server.wait_for_line(
        r"Connection interrupted: GET /due from "
        rf"{re.escape(link.client_ip)}:\d+ after [\d.]+ s while delivering "
        r"\(answer not acknowledged; \d+ bytes not acknowledged\)$",
        timeout=1.0 + PEER_TIMEOUT + 10,
    )
    return time.monotonic() - due


def _pull_once_asked(
    link: Link, server: Twistd, control: int, client: subprocess.Popen[str]
) -> float:
    """
    Once C{client} has asked and its request pends, L{_pull_before_due};
    the client is killed either way.
    """
    try:
        assert client.stdout is not None
        assert client.stdout.readline().strip() == "asked"
        wait_until(lambda: stats(control)["pending"] == 1, "the request to pend")
        return _pull_before_due(link, server)
    finally:
        client.kill()
        client.wait(timeout=10)


@pytest.mark.parametrize("scheme", ["tcp", "ssl"])
def test_an_answer_never_acknowledged_is_not_completed(
    scheme: str,
    link: Link,
    closedemo: Callable[..., Twistd],
    certificate: TLSFiles,
) -> None:
    """
    The link goes down a moment before a 1 s answer is due: the answer is
    written into the socket buffer and never acknowledged.  It is reported
    as such within the peer timeout of its due time, never as completed.
    """
    server, port, control = _serve_on(link, closedemo, certificate, scheme)
    client = link.run(sys.executable, "-c", ASKER, link.server_ip, str(port), scheme)
    after = _pull_once_asked(link, server, control, client)
    assert after <= PEER_TIMEOUT + SLACK, after
    assert stats(control) == {
        "pending": 0,
        "completed": 0,
        "interrupted": 1,
        "rejected": 0,
        "server_ended": 0,
    }
    # Cut short with all of it handed over: delivering.
    assert phases(control) == {"waiting": 0, "answering": 0, "delivering": 1}
    assert "Traceback" not in server.output


@pytest.mark.parametrize("scheme", ["tcp", "ssl"])
def test_an_answer_acknowledged_over_the_link_is_completed(
    scheme: str,
    link: Link,
    closedemo: Callable[..., Twistd],
    certificate: TLSFiles,
) -> None:
    server, port, control = _serve_on(link, closedemo, certificate, scheme)
    client = link.run(
        sys.executable, "-c", ASKER, link.server_ip, str(port), scheme, "read"
    )  # fmt: skip
    try:
        assert client.stdout is not None
        assert client.stdout.readline().strip() == "asked"
        assert client.stdout.readline().strip() == "HTTP/1.1 200"
        wait_until(lambda: stats(control)["completed"] == 1, "the acknowledgement")
    finally:
        client.kill()
        client.wait(timeout=10)
    assert stats(control)["interrupted"] == 0
    assert "delivering" not in server.output
    assert "not acknowledged" not in server.output


# An HTTP/2 client (over TLS with ALPN h2): one request, then it holds the
# connection, reading nothing more, until it is killed.
H2_ASKER = """
import socket, ssl, sys, time
import h2.config, h2.connection
host, port = sys.argv[1], int(sys.argv[2])
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
context.set_alpn_protocols(["h2"])
s = context.wrap_socket(
    socket.create_connection((host, port), timeout=10), server_hostname="localhost"
)
assert s.selected_alpn_protocol() == "h2", s.selected_alpn_protocol()
conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
conn.initiate_connection()
conn.send_headers(1, [(":method", "GET"), (":path", "/due?delay=1"),
                      (":scheme", "https"), (":authority", "localhost")],
                  end_stream=True)
s.sendall(conn.data_to_send())
print("asked", flush=True)
time.sleep(60)
"""


def test_an_http2_answer_never_acknowledged_is_not_completed(
    link: Link, closedemo: Callable[..., Twistd], certificate: TLSFiles
) -> None:
    server, port, control = _serve_on(link, closedemo, certificate, "ssl")
    client = link.run(sys.executable, "-c", H2_ASKER, link.server_ip, str(port))
    after = _pull_once_asked(link, server, control, client)
    assert after <= PEER_TIMEOUT + SLACK, after
    assert stats(control)["completed"] == 0
    assert stats(control)["interrupted"] == 1


# -- One address holding the descriptors: what it holds is freed ---------------

ROOM_LIMIT = 120
"""The descriptor limit of the server one address fills: room for fewer
than the 100 or 110 connections it opens."""


def short_of_descriptors(
    closedemo: Callable[..., Twistd], *listen: str
) -> tuple[Twistd, int]:
    """
    closedemo on C{listen} and on loopback, short of descriptors, with no
    cap on one address's connections (so that it is the room that holds);
    the server and its loopback port.
    """
    server = closedemo(
        *(a for d in listen for a in ("--listen", d)),
        "--listen", "tcp:0:interface=127.0.0.1",
        "--max-connections-per-client", "0",
        limits=(ROOM_LIMIT, ROOM_LIMIT),
    )  # fmt: skip
    room = int(server.wait_for_line(r"room for (\d+) connections", 30).group(1))
    assert room < 100, room
    return server, listening_on(server, "tcp")


def listening_on(server: Twistd, kind: str) -> int:
    match = server.wait_for_line(
        rf"closedemo listening on 127\.0\.0\.1:(\d+) \({kind}:", timeout=30
    )
    return int(match.group(1))


def answered_within(port: int, seconds: float) -> float:
    """
    How long a fresh client from another address (127.0.0.2) waited for
    its answer; it must come within C{seconds}.
    """
    start = time.monotonic()
    with socket.create_connection(
        ("127.0.0.1", port), timeout=seconds, source_address=("127.0.0.2", 0)
    ) as s:
        s.sendall(b"GET /?delay=0 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 200 "), "no answer"
    took = time.monotonic() - start
    assert took < seconds
    return took


def h2_connection(port: int) -> socket.socket | None:
    """
    An HTTP/2 connection over TLS, its preface sent and a PING answered:
    alive, with no stream open; C{None} if the server closed it first.
    """
    import h2.config
    import h2.connection
    import h2.events

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s = context.wrap_socket(raw, server_hostname="localhost")
        assert s.selected_alpn_protocol() == "h2"
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        conn.ping(b"alive?!!")
        s.sendall(conn.data_to_send())
        while data := s.recv(65536):
            events = conn.receive_data(data)
            if any(isinstance(e, h2.events.PingAckReceived) for e in events):
                s.sendall(conn.data_to_send())
                return s
    except OSError:
        pass
    raw.close()
    return None


def test_idle_http2_connections_are_freed_for_a_newcomer(
    closedemo: Callable[..., Twistd], certificate: TLSFiles
) -> None:
    server, port = short_of_descriptors(closedemo, certificate.listen)
    tls_port = listening_on(server, "ssl")
    held = []
    try:
        # One at a time: each is an idle HTTP/2 connection before the next.
        for _ in range(100):
            if (connection := h2_connection(tls_port)) is not None:
                held.append(connection)
        answered_within(port, 2.0)
        freeing = server.wait_for_line(r"Descriptors short: closed (\d+) idle")
        assert int(freeing.group(1)) >= 1
    finally:
        for s in held:
            s.close()
    assert "Traceback" not in server.output


def test_uploads_that_trickle_are_freed_for_a_newcomer(
    closedemo: Callable[..., Twistd],
) -> None:
    server, port = short_of_descriptors(closedemo)
    head = b"POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n"
    held: list[socket.socket] = []
    try:
        # Ten at a time, a moment apart, so that the server has read each
        # one's head and the start of its body before the next come: all of
        # them are sending a body when the room runs short, none idle.
        for _ in range(11):
            held += flood(port, 10, head + b"a")
            time.sleep(0.05)
        for _ in range(2):
            # A byte more on each (those freed already fail: not a matter).
            for s in held:
                try:
                    s.send(b"b")
                except OSError:
                    pass
            answered_within(port, 2.0)
        server.wait_for_line(r"Descriptors short: closed \d+ idle")
        assert stats(port)["pending"] == 0
    finally:
        for s in held:
            s.close()
    assert "Traceback" not in server.output
