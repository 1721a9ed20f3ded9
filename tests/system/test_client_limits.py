"""
Per-client caps and the Host check of C{twistd closedemo}, over real TCP:
clients on two loopback source addresses (127.0.0.1 and 127.0.0.2), the
server a real subprocess.  Every wait has a deadline.
"""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from ..twistd_process import (
    LISTEN,
    Twistd,
    http_connection,
    http_get,
    stats,
    wait_until,
)

STREAMS_PER_CLIENT = 3


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    server = Twistd(
        tmp_path_factory.mktemp("limits"),
        *LISTEN,
        "--max-streams-per-client",
        str(STREAMS_PER_CLIENT),
        "--max-pending-per-client",
        "2",
        "--allowed-host",
        "demo.example",
        "--allowed-host",
        "*.apps.example",
    )
    try:
        yield server.port()
    finally:
        server.kill()


def open_stream(
    stack: ExitStack, port: int, source: str, path: str = "/events"
) -> http.client.HTTPResponse:
    """
    GET C{path} from C{source}: the response once its head is in (a
    stream's body goes on); the connection stays open until C{stack} ends.
    """
    connection = http_connection(port, source)
    stack.callback(connection.close)
    connection.request("GET", path)
    return connection.getresponse()


def test_one_address_gets_its_streams_and_no_more(port: int) -> None:
    with ExitStack() as stack:
        mine = [
            open_stream(stack, port, "127.0.0.1", path)
            for path in ("/events", "/outcomes", "/events")
        ]
        assert [r.status for r in mine] == [200] * STREAMS_PER_CLIENT
        flood = [open_stream(stack, port, "127.0.0.1") for _ in range(5)]
        assert [r.status for r in flood] == [429] * 5
        assert flood[0].read() == b"too many streams from this client; retry in 1 s\n"
        assert flood[0].getheader("Retry-After") == "1"
        # A second address still gets its streams, and its answers.
        theirs = [
            open_stream(stack, port, "127.0.0.2") for _ in range(STREAMS_PER_CLIENT)
        ]
        assert [r.status for r in theirs] == [200] * STREAMS_PER_CLIENT
        assert http_get(port, "/?delay=0", source="127.0.0.2") == (200, b"hello")
        # And so does the first, for anything but another stream.
        assert http_get(port, "/?delay=0", source="127.0.0.1") == (200, b"hello")
        assert stats(port)["rejected"] == 5
        # The streams go on.
        assert mine[0].readline().startswith((b"data: ", b"id: ", b": "))


def test_one_address_gets_its_pending_answers_and_no_more(port: int) -> None:
    before = stats(port)["rejected"]
    with ExitStack() as stack:
        held = []
        for n in range(2):
            connection = http_connection(port, "127.0.0.1")
            stack.callback(connection.close)
            connection.request("GET", f"/held/{n}?delay=30")
            held.append(connection)
        wait_until(lambda: stats(port)["pending"] == 2, "2 pending answers")
        assert http_get(port, "/third?delay=0", source="127.0.0.1") == (
            429,
            b"too many pending requests from this client; retry in 1 s\n",
        )
        assert http_get(port, "/other?delay=0", source="127.0.0.2") == (200, b"hello")
    assert stats(port)["rejected"] == before + 1


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "localhost:1337",
        "127.0.0.1",
        "127.0.0.1:1337",
        "b3.localhost",
        "[::1]:1337",
        "demo.example",
        "a.apps.example",
    ],
)
def test_allowed_hosts_get_200(port: int, host: str) -> None:
    assert http_get(port, "/stats", host=host)[0] == 200


@pytest.mark.parametrize(
    "host", ["attacker.example", "attacker.example:1337", "apps.example", "10.9.8.7"]
)
def test_other_hosts_get_421(port: int, host: str) -> None:
    status, body = http_get(port, "/stats", host=host)
    assert status == 421
    assert body == f"host {host} is not served here\n".encode()


def test_the_address_it_listens_on_is_allowed(tmp_path: Path) -> None:
    # Bound to 127.0.0.2 only, it answers a Host naming that address.
    server = Twistd(tmp_path, "--listen", "tcp:0:interface=127.0.0.2")
    try:
        match = server.wait_for_line(r"closedemo listening on 127\.0\.0\.2:(\d+)")
        bound = int(match.group(1))
        connection = http.client.HTTPConnection("127.0.0.2", bound, timeout=10)
        try:
            connection.request("GET", "/stats")  # Host: 127.0.0.2:port
            assert connection.getresponse().status == 200
        finally:
            connection.close()
    finally:
        server.kill()


def test_one_address_gets_its_connections_and_no_more(tmp_path: Path) -> None:
    server = Twistd(tmp_path, *LISTEN, "--max-connections-per-client", "5")
    held: list[socket.socket] = []
    try:
        port = server.port()
        for _ in range(8):
            held.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        # The three past the cap are closed as soon as accepted, unread.
        assert [s.recv(1) for s in held[5:]] == [b""] * 3
        line = server.wait_for_line(r"Connections per client: closed (\d+) new")
        assert int(line.group(1)) >= 1
        # Another address has its own; the first, one back when one goes.
        assert http_get(port, "/?delay=0", source="127.0.0.2") == (200, b"hello")
        held.pop(0).close()

        def served() -> bool:
            try:
                return http_get(port, "/?delay=0", source="127.0.0.1")[0] == 200
            except OSError:  # closed at once: the place is not back yet
                return False

        wait_until(served, "a place for 127.0.0.1 again")
    finally:
        for s in held:
            s.close()
        server.kill()
