"""
C{--access-log PATH} under a flood, over real sockets against C{twistd
closedemo} in a child process: the file rotates by size and at most
C{--access-log-files} files are left, each line bounded.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from ..twistd_process import LISTEN, Twistd

PATH = b"/" + b"a" * 16000
PIPELINED = 32


def test_a_flood_leaves_at_most_the_files_allowed(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    server = Twistd(
        tmp_path,
        *LISTEN,
        "--access-log",
        str(logs / "access.log"),
        "--access-log-files",
        "3",
        "--access-log-size",
        "100000",
    )
    try:
        port = server.port()
        request = b"GET " + PATH + b"?delay=0 HTTP/1.1\r\nHost: localhost\r\n\r\n"
        answered = 0
        most = 0
        # About 260 lines fill a file: enough to rotate past the files kept.
        until = time.monotonic() + 20
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            while answered < 1200 and time.monotonic() < until:
                sock.sendall(request * PIPELINED)
                got = b""
                while got.count(b"HTTP/1.1 200 ") < PIPELINED or not got.endswith(
                    b"hello"
                ):
                    data = sock.recv(1 << 16)
                    assert data, "the server closed the connection"
                    got += data
                answered += PIPELINED
                most = max(most, len(os.listdir(logs)))
        files = sorted(os.listdir(logs))
        lines = sum(
            (logs / name).read_text(encoding="utf-8").count("\n") for name in files
        )
        print(f"{answered} answered, {files}, {lines} lines kept")
        # Unbounded: a line of 16 KB each, every rotated file kept.
        assert files == ["access.log", "access.log.1", "access.log.2"]
        assert most <= 3
        for name in files:
            assert (logs / name).stat().st_size < 100_000 + 1_000
        assert answered >= 1200
    finally:
        server.kill()
