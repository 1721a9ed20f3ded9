"""
End to end through the real C{twistd} command: the installed closedemo
plugin, run as a subprocess, spoken to over sockets.

Every wait has a deadline; the subprocess is always killed at the end.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ..helpers import get_request
from ..twistd_process import (
    LISTEN,
    Twistd,
    command,
    http_get,
    run_to_end,
    started_in,
    stats,
    wait_until,
)


@pytest.fixture
def closedemo(tmp_path: Path) -> Iterator[Callable[..., Twistd]]:
    """
    Start C{twistd closedemo} with options, in an empty directory so that
    it is the installed plugin that twistd finds; kill it afterwards.
    """
    with started_in(tmp_path) as start:
        yield start


def test_readme_walkthrough(closedemo: Callable[..., Twistd]) -> None:
    server = closedemo(*LISTEN, "--delay", "5")
    port = server.port()

    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client_port = client.getsockname()[1]
        client.sendall(b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n")
        time.sleep(0.3)  # the walkthrough's impatient client; then a clean close

    server.wait_for_line(
        rf"Connection interrupted: GET /slow from 127\.0\.0\.1:{client_port} "
        r"after 0\.\d\d s while waiting \(client closed the connection\)$"
    )
    assert stats(port) == {
        "pending": 0,
        "completed": 0,
        "interrupted": 1,
        "rejected": 0,
        "server_ended": 0,
    }
    assert http_get(port, "/?delay=0.1") == (200, b"hello")
    assert stats(port) == {
        "pending": 0,
        "completed": 1,
        "interrupted": 1,
        "rejected": 0,
        "server_ended": 0,
    }
    assert len(server.interruptions()) == 1
    assert "Traceback" not in server.output
    assert server.process.poll() is None


@pytest.mark.parametrize(
    ("options", "option", "words"),
    [
        (("--delay", "-1"), "--delay", "'-1'"),
        (("--delay", "abc"), "--delay", "'abc'"),
        (("--delay", "61"), "--delay", "over the maximum of 60 s"),
        (("--listen", "bogus:1"), "--listen", "bogus"),
    ],
)
def test_bad_options_are_usage_errors(
    tmp_path: Path, options: tuple[str, ...], option: str, words: str
) -> None:
    result = run_to_end(command(*options), tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Usage:" in output
    # twistd ends with "<program>: <the reason>", naming the option.
    errors = [line for line in output.splitlines() if f": {option}" in line]
    assert errors, output
    assert words in errors[-1], output
    assert "Traceback" not in output
    assert "listening on" not in output


@dataclass
class Shutdown:
    returncode: int
    seconds: float
    output: str
    interruptions: list[str]
    quick_answer: bytes
    slow_answer: bytes
    refused_new: bool


def read_all(client: socket.socket) -> bytes:
    chunks = []
    while chunk := client.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture(scope="module")
def sigterm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shutdown]:
    """
    Run closedemo with a grace of 1 s and two requests pending, one due
    within the grace and one after it; send SIGTERM and see it drain.
    """
    server = Twistd(
        tmp_path_factory.mktemp("sigterm"), *LISTEN, "--shutdown-grace", "1"
    )
    try:
        port = server.port()
        quick = socket.create_connection(("127.0.0.1", port), timeout=10)
        slow = socket.create_connection(("127.0.0.1", port), timeout=10)
        with quick, slow:
            quick.sendall(b"GET /quick?delay=0.5 HTTP/1.1\r\nHost: localhost\r\n\r\n")
            slow.sendall(b"GET /slow?delay=30 HTTP/1.1\r\nHost: localhost\r\n\r\n")
            wait_until(lambda: stats(port)["pending"] == 2, "both to be pending")
            started = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            server.wait_for_line("Shutdown drain", timeout=10)
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
                refused_new = False
            except ConnectionRefusedError:
                refused_new = True
            try:
                returncode = server.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pytest.fail(f"twistd still runs 10 s after SIGTERM:\n{server.output}")
            seconds = time.monotonic() - started
            quick_answer, slow_answer = read_all(quick), read_all(slow)
        server._reader.join(timeout=10)
        yield Shutdown(
            returncode,
            seconds,
            server.output,
            server.interruptions(),
            quick_answer,
            slow_answer,
            refused_new,
        )
    finally:
        server.kill()


def test_sigterm_drains_and_stops(sigterm: Shutdown) -> None:
    # twistd re-raises the stopping signal: 143 (-15) is its clean exit.
    assert sigterm.returncode in (0, -signal.SIGTERM, 128 + signal.SIGTERM)
    assert 0.9 < sigterm.seconds < 5
    assert "Traceback" not in sigterm.output
    assert sigterm.refused_new


def test_an_answer_due_within_the_grace_completes(sigterm: Shutdown) -> None:
    assert sigterm.quick_answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert sigterm.quick_answer.endswith(b"\r\n\r\nhello")


def test_an_answer_due_after_the_grace_gets_503(sigterm: Shutdown) -> None:
    head, _, body = sigterm.slow_answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 ")
    assert b"\r\nRetry-After: 5" in head
    assert b"\r\nConnection: close" in head
    assert body == b"server shutting down; retry in 5 s\n"


def test_the_drain_is_not_blamed_on_clients(sigterm: Shutdown) -> None:
    assert sigterm.interruptions == []
    assert re.search(
        r"Ended by the server: GET /slow from 127\.0\.0\.1:\d+ after 1\.\d\d s "
        r"while waiting \(server shutting down\)",
        sigterm.output,
    ), sigterm.output
    assert (
        "Shutdown drain: 1 answered normally, 1 answered 503, 0 event streams "
        "ended, 0 interrupted by clients" in sigterm.output
    ), sigterm.output


def test_json_logs_carry_the_outcome(tmp_path: Path) -> None:
    """
    The JSON-log command of docs/operating.md: one JSON object per line (for
    C{json.loads}, no record separator), the outcome as plain fields.
    """
    readme = (Path(__file__).resolve().parents[2] / "docs" / "operating.md").read_text()
    [line] = re.findall(r"^twistd -n --logger \S+ closedemo$", readme, re.M)
    logger = line.split()[3]
    assert logger == "twisted_close.logs.json_lines_observer"
    server = Twistd(tmp_path, *LISTEN, logging=("--logger", logger))
    try:
        match = server.wait_for_line(r'"address": "127\.0\.0\.1:(\d+)"', timeout=30)
        port = int(match.group(1))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n")
            wait_until(lambda: stats(port)["pending"] == 1, "the request to be pending")
            own_port = client.getsockname()[1]
        server.wait_for_line(r'"ending": "client_closed"')
    finally:
        server.kill()
    events = [json.loads(line) for line in server.lines]
    [event] = [e for e in events if "outcome" in e]
    assert event["outcome"]["path"] == "/slow"
    assert event["outcome"]["client"] == f"127.0.0.1:{own_port}"
    assert event["outcome"]["reason"] == "client closed the connection"
    assert event["log_namespace"] == "twisted_close"


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (("--listen", "tcp:99999"), "--listen 'tcp:99999': port 99999 is not"),
        (("--access-log", "/nonexistent/x.log"), "--access-log: '/nonexistent/x.log'"),
        (("--tick", "abc"), "--tick: tick 'abc' is not a number"),
        (("--idle-timeout", "abc"), "--idle-timeout: idle timeout 'abc'"),
    ],
)
def test_option_errors_are_one_line_not_a_traceback(
    tmp_path: Path, options: tuple[str, ...], words: str
) -> None:
    result = run_to_end(command(*options), tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert words in output
    assert "Traceback" not in output
    assert list(tmp_path.iterdir()) == []


def test_a_port_that_cannot_be_had_is_one_line_not_a_traceback(
    tmp_path: Path,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_to_end(
            command("--listen", f"tcp:{port}:interface=127.0.0.1"), tmp_path
        )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert f"closedemo: --listen: Couldn't listen on 127.0.0.1:{port}" in output
    assert "Address already in use" in output
    assert "Traceback" not in output


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_half_close_answer_answers_a_half_closed_client(
    closedemo: Callable[..., Twistd], version: str
) -> None:
    server = closedemo(*LISTEN, "--delay", "0.3", "--half-close", "answer")
    port = server.port()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(get_request("/slow", version))
        client.shutdown(socket.SHUT_WR)  # as `nc -N` does
        received = b""
        while data := client.recv(65536):
            received += data
    assert received.startswith(f"HTTP/{version} 200 ".encode())
    assert received.endswith(b"\r\n\r\nhello")
    server.wait_for_line(
        r"Connection interrupted: GET /slow from 127\.0\.0\.1:\d+ "
        r"after 0\.\d\d s while \w+ \(client half-closed; answered\)$"
    )
