"""
C{examples/asyncio_embed.py}, run as its own process: an asyncio program
(C{asyncio.run(main())}) that serves a twisted_close resource on the asyncio
reactor next to its own asyncio task, and drains on SIGTERM.

Every wait has a deadline; the process is always killed at the end.
"""

from __future__ import annotations

import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..twistd_process import Twistd, http_get

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "asyncio_embed.py"


@pytest.fixture
def program(tmp_path: Path) -> Iterator[Twistd]:
    process = Twistd(
        tmp_path, argv=[sys.executable, str(EXAMPLE), "--port", "0", "--grace", "5"]
    )
    try:
        yield process
    finally:
        process.kill()


def test_serves_reports_and_drains_on_sigterm(program: Twistd) -> None:
    found = program.wait_for_line(r"serving on 127\.0\.0\.1:(\d+)", timeout=30)
    port = int(found.group(1))

    # Served from a coroutine that awaits asyncio.sleep, next to the
    # program's own asyncio task (its ticks).
    status, body = http_get(port, "/?delay=0.3")
    assert status == 200
    assert body.startswith(b"hello after 0.3 s, at tick ")
    assert int(body.split()[-1]) >= 1
    assert http_get(port, "/?delay=abc")[0] == 400

    # A client that leaves is reported as anywhere else.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as leaving:
        leaving.sendall(b"GET /?delay=10 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)  # the client's patience
    program.wait_for_line(
        r"Connection interrupted: GET / from 127\.0\.0\.1:\d+ after 0\.\d+ s "
        r"while waiting \(client closed the connection\)"
    )

    # A request pending at the SIGTERM is answered within the grace.
    pending = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        pending.sendall(b"GET /?delay=1.5 HTTP/1.1\r\nHost: x\r\n\r\n")
        # Sent first: once a later request is answered, this one was read.
        assert http_get(port, "/?delay=0")[0] == 200
        program.process.send_signal(signal.SIGTERM)

        # Logged once the port's socket is closed ("Port ... Closed" is
        # logged just before).
        program.wait_for_line(r"Stopping factory <twisted\.web\.server\.Site ")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=10).close()
        answer = b""
        while chunk := pending.recv(65536):  # closed after the answer
            answer += chunk
    finally:
        pending.close()
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.split(b"\r\n\r\n", 1)[1].startswith(b"hello after 1.5 s, ")
    program.wait_for_line(
        r"Shutdown drain: 1 answered normally, 0 answered 503, 0 event streams "
        r"ended, 0 interrupted by clients, in [\d.]+ s"
    )
    found = program.wait_for_line(r"stopped after (\d+) ticks$")
    assert int(found.group(1)) > 0
    assert program.process.wait(timeout=10) == 0
    assert "Traceback" not in program.output
