"""
Request bodies over real sockets, against C{twistd closedemo} in a child
process whose C{TMPDIR} is an empty directory of its own: a 60 MB upload,
over HTTP/1.1 (with a length, and chunked) and over HTTP/2, gets C{413}
and writes nothing there (twisted.web alone would spool it to a file).
"""

from __future__ import annotations

import os
import re
import select
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, ResponseReceived, StreamEnded, StreamReset

from ..helpers import TLSFiles, self_signed
from ..twistd_process import LISTEN, Twistd

UPLOAD = 60 * 1024 * 1024
CHUNK = 256 * 1024


class Server:
    def __init__(self, process: Twistd, tmp: Path) -> None:
        self.process = process
        self.tmp = tmp
        self.port = process.port()
        match = process.wait_for_line(
            r"closedemo listening on 127\.0\.0\.1:(\d+) \(ssl:0:", timeout=30
        )
        self.tls_port = int(match.group(1))

    def files_in_tmp(self) -> list[str]:
        """
        What the server holds in its temporary directory: the directory's
        entries, and its open files there (a spooled body is an unnamed one).
        """
        held = []
        fds = Path(f"/proc/{self.process.process.pid}/fd")
        for fd in fds.iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue  # closed meanwhile
            if target.startswith(str(self.tmp)):
                held.append(target)
        return sorted(os.listdir(self.tmp)) + held


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tls: TLSFiles = self_signed(tmp_path_factory.mktemp("tls"))
    tmp = tmp_path_factory.mktemp("spool")
    process = Twistd(
        tmp_path_factory.mktemp("run"),
        *LISTEN,
        "--listen",
        tls.listen,
        env={"TMPDIR": str(tmp)},
    )
    try:
        yield Server(process, tmp)
    finally:
        process.kill()


def upload(port: int, head: bytes, chunk: bytes, server: Server) -> bytes:
    """
    Send C{head} then C{chunk} again and again, 60 MB in all or until the
    server answers or closes (10 s at most), checking that nothing lands
    in the server's temporary directory; what the server answered.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setblocking(False)
    answer = b""
    sent = 0
    deadline = time.monotonic() + 10
    pending = head
    try:
        while time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock], [], 0.5)
            if readable:
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    break
                if not data:
                    break
                answer += data
                if b"\r\n\r\n" in answer and answer.endswith(b"\n"):
                    break
            if writable and sent < UPLOAD:
                try:
                    n = sock.send(pending)
                except (BrokenPipeError, ConnectionResetError):
                    sent = UPLOAD  # the server closed: read what it said
                    continue
                sent += n
                pending = pending[n:] or chunk
            assert server.files_in_tmp() == []
    finally:
        sock.close()
    return answer


def test_a_60_mb_upload_gets_413_and_writes_nothing(server: Server) -> None:
    head = b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % (
        UPLOAD,
    )
    answer = upload(server.port, head, b"x" * CHUNK, server)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert answer.endswith(
        b"\r\n\r\nrequest body over 65,536 bytes (62,914,560 bytes)\n"
    )
    assert server.files_in_tmp() == []


def test_a_chunked_upload_is_cut_with_413_and_writes_nothing(server: Server) -> None:
    head = (
        b"POST /upload HTTP/1.1\r\nHost: localhost\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"%x\r\n%s\r\n" % (CHUNK, b"x" * CHUNK)
    answer = upload(server.port, head, chunk, server)
    assert re.match(rb"HTTP/1.1 413 .*request body over 65,536 bytes\n$", answer, re.S)
    assert server.files_in_tmp() == []


@pytest.mark.parametrize("announced", [True, False], ids=["length", "no-length"])
def test_an_http2_upload_gets_413_and_writes_nothing(
    server: Server, announced: bool
) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    raw = socket.create_connection(("127.0.0.1", server.tls_port), timeout=10)
    sock = context.wrap_socket(raw, server_hostname="localhost")
    assert sock.selected_alpn_protocol() == "h2"
    h2 = H2Connection(H2Configuration(client_side=True))
    h2.initiate_connection()
    headers = [
        (":method", "POST"),
        (":scheme", "https"),
        (":authority", "localhost"),
        (":path", "/upload"),
    ]
    if announced:
        headers.append(("content-length", str(UPLOAD)))
    h2.send_headers(1, headers)
    sock.sendall(h2.data_to_send())
    status = None
    body = b""
    reset = None
    sent = 0
    deadline = time.monotonic() + 10
    try:
        while reset is None and time.monotonic() < deadline:
            if sent < UPLOAD and reset is None:
                window = min(
                    h2.local_flow_control_window(1),
                    h2.max_outbound_frame_size,
                    UPLOAD - sent,
                )
                if window > 0:
                    h2.send_data(1, b"x" * window, end_stream=sent + window >= UPLOAD)
                    sent += window
                    sock.sendall(h2.data_to_send())
            if select.select([sock], [], [], 0.2)[0] or sock.pending():
                data = sock.recv(65536)
                if not data:
                    break
                for event in h2.receive_data(data):
                    if isinstance(event, ResponseReceived):
                        status = dict(event.headers)[b":status"]
                    elif isinstance(event, DataReceived):
                        body += event.data
                        h2.acknowledge_received_data(event.flow_controlled_length, 1)
                    elif isinstance(event, StreamReset):
                        reset = event.error_code
                    elif isinstance(event, StreamEnded):
                        pass
                sock.sendall(h2.data_to_send())
            assert server.files_in_tmp() == []
    finally:
        sock.close()
    assert status == b"413"
    assert body.startswith(b"request body over 65,536 bytes")
    assert reset == 0  # NO_ERROR: stop sending, nothing went wrong
    assert sent < UPLOAD
    assert server.files_in_tmp() == []
