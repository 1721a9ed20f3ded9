"""
C{twistd closedemo} behind a proxy, over real TCP: the PROXY protocol
(Twisted's C{haproxy:} endpoint) and C{X-Forwarded-For} from a trusted
proxy name the client that the caps, the log and C{/outcomes} use.  (The
same through a real nginx: tests/system/test_nginx.py.)
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..twistd_process import Twistd, wait_until


def listening(server: Twistd, kind: str) -> int:
    match = server.wait_for_line(
        rf"closedemo listening on 127\.0\.0\.1:(\d+) \({kind}:", timeout=30
    )
    return int(match.group(1))


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator[tuple[Twistd, int]]:
    server = Twistd(
        tmp_path,
        "--listen", "haproxy:tcp:0:interface=127.0.0.1",
        "--max-pending-per-client", "1",
    )  # fmt: skip
    try:
        yield server, listening(server, "haproxy")
    finally:
        server.kill()


def proxied(port: int, client: str, request: bytes) -> socket.socket:
    """
    A connection that says, in a PROXY protocol v1 header, that it carries
    C{client}'s connection; then C{request}.
    """
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    header = f"PROXY TCP4 {client} 127.0.0.1 40000 {port}\r\n".encode()
    s.sendall(header + request)
    return s


def read_status(s: socket.socket) -> bytes:
    return s.recv(65536)[:12]


def outcome_of(stream: http.client.HTTPResponse, path: str) -> dict[str, object]:
    """
    The first outcome for C{path} that C{stream} (C{/outcomes}) sends.
    """
    while line := stream.readline():
        if line.startswith(b"data: "):
            data = json.loads(line[6:])
            for each in data.get("outcomes", []):
                if each["outcome"]["path"] == path:
                    outcome: dict[str, object] = each["outcome"]
                    return outcome
    raise AssertionError("the stream ended")


def test_the_proxy_protocol_names_the_client(haproxy: tuple[Twistd, int]) -> None:
    server, port = haproxy
    watcher = proxied(
        port, "198.51.100.9", b"GET /outcomes HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    held = []
    try:
        answer = http.client.HTTPResponse(watcher)
        answer.begin()
        assert answer.status == 200
        ask = b"GET /slow?delay=30 HTTP/1.1\r\nHost: localhost\r\n\r\n"
        held.append(proxied(port, "198.51.100.7", ask))
        # The same client again: its own cap (1), whoever carries it.
        again = proxied(port, "198.51.100.7", ask)
        held.append(again)
        assert read_status(again) == b"HTTP/1.1 429"
        # Another client through the same proxy is not held back.
        other = proxied(port, "198.51.100.8", ask)
        held.append(other)
        held[0].close()
        server.wait_for_line(
            r"Connection interrupted: GET /slow from 198\.51\.100\.7:40000 after"
        )
        # What /outcomes sends names the client of the PROXY header.
        assert outcome_of(answer, "/slow")["client"] == "198.51.100.7:40000"
        other.close()
        wait_until(lambda: len(server.interruptions()) == 2, "the other to leave")
        assert "from 198.51.100.8:40000" in server.interruptions()[1]
    finally:
        watcher.close()
        for s in held:
            s.close()


def test_without_the_proxy_header_the_connection_is_closed(
    haproxy: tuple[Twistd, int],
) -> None:
    _, port = haproxy
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /?delay=0 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert s.recv(100) == b""
