"""
systemd socket activation: closedemo run as C{docs/systemd/closedemo.service}
says (its C{ExecStart}, on the socket C{closedemo.socket} describes), under
Debian's C{systemd-socket-activate}, and reloaded as its C{ExecReload} does
(SIGHUP to the pid its C{PIDFile} names) while a client connects in a loop:
no connection is refused.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..twistd_process import Twistd, reactor_options, twistd_command, wait_until
from .test_closedemo_workers import alive
from .test_restart import generations

UNITS = Path(__file__).parents[2] / "docs" / "systemd"

RELOADS = 2


def unit(name: str) -> dict[str, str]:
    """
    The C{Key=Value} lines of a unit file (each key once, as here).
    """
    found = {}
    for line in (UNITS / name).read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            assert key not in found, f"{name}: {key} twice"
            found[key] = value
    return found


def free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(params=[(), ("--workers", "2")], ids=["single", "workers"])
def activated(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[Twistd, int, Path]]:
    sockets, service = unit("closedemo.socket"), unit("closedemo.service")
    host, _, _ = sockets["ListenStream"].rpartition(":")
    argv = shlex.split(service["ExecStart"])
    # The unit's twistd is the installed one; here, this Python's.
    assert Path(argv[0]).name == "twistd"
    pidfile = service["PIDFile"]
    assert f"--pidfile={pidfile}" in argv
    assert argv[argv.index("--listen") + 1] == "systemd:domain=INET:index=0"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    # A stop goes to the main process alone, which stops its workers.
    assert service["KillMode"] == "mixed"
    ours = tmp_path / "twistd.pid"
    argv = [
        *twistd_command(),
        *reactor_options(),
        *[f"--pidfile={ours}" if a == f"--pidfile={pidfile}" else a for a in argv[1:]],
        # The workers share systemd's socket as they share one of their own.
        *request.param,
    ]
    port = free_port(host)
    # Only what -E names reaches the service (and PATH, HOME, ...).
    passed = ["PYTHONPATH", "TWISTED_CLOSE_TEST_REACTOR"]
    setenv = [f"-E{n}={os.environ[n]}" for n in passed if n in os.environ]
    server = Twistd(
        tmp_path,
        argv=[
            "systemd-socket-activate",
            f"--listen={host}:{port}",
            f"--fdname={sockets['FileDescriptorName']}",
            "-EPYTHONUNBUFFERED=1",
            *setenv,
            *argv,
        ],
    )
    try:
        server.wait_for_line(rf"Listening on {host}:{port}")
        yield server, port, ours
    finally:
        for pid in generations(server):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        server.kill()


def test_socket_activation_and_reloads_refuse_no_connection(
    activated: tuple[Twistd, int, Path],
) -> None:
    server, port, pidfile = activated
    stopping = threading.Event()
    answers: list[int] = []
    errors: list[str] = []

    def client() -> None:
        while not stopping.is_set():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=20) as c:
                    c.sendall(
                        b"GET /?delay=0 HTTP/1.1\r\nHost: localhost\r\n"
                        b"Connection: close\r\n\r\n"
                    )
                    data = b""
                    while chunk := c.recv(65536):
                        data += chunk
                answers.append(int(data[9:12]) if data[:9] == b"HTTP/1.1 " else 0)
            except OSError as e:
                errors.append(repr(e))
            time.sleep(0.01)

    loop = threading.Thread(target=client)
    loop.start()
    try:
        # The first connection starts closedemo (systemd-socket-activate
        # runs it in its own process), which adopts the socket.
        server.wait_for_line(
            rf"closedemo listening on 127\.0\.0\.1:{port} "
            r"\(systemd:domain=INET:index=0\)",
            timeout=30,
        )
        if "--workers" in list(server.process.args):  # type: ignore[arg-type]
            server.wait_for_line(r"worker 1 \(pid \d+\) serving", timeout=30)
        wait_until(pidfile.exists, "the pidfile")
        first = int(pidfile.read_text())
        assert first == server.process.pid
        for n in range(RELOADS):
            old = int(pidfile.read_text())
            os.kill(old, signal.SIGHUP)
            took = server.wait_for_line(
                rf"generation {n + 2} \(pid (\d+)\) took over; generation "
                rf"{n + 1} \(pid {old}\)",
                20,
            )
            # The pidfile names the new main process before the old one
            # exits: what systemd reads, with PIDFile=, to follow it.
            assert alive(old)
            assert int(pidfile.read_text()) == int(took.group(1))
            time.sleep(0.5)
        wait_until(lambda: not alive(first), "the first generation to exit", 20)
    finally:
        stopping.set()
        loop.join(timeout=30)
    assert errors == []
    assert answers and set(answers) == {200}, set(answers)
    assert int(pidfile.read_text()) != first
    assert "Traceback" not in server.output


def test_without_systemd_the_option_says_what_is_missing(tmp_path: Path) -> None:
    from ..twistd_process import command

    result = subprocess.run(
        command("--listen", "systemd:domain=INET:index=0"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    assert (
        "--listen 'systemd:domain=INET:index=0': no such socket was handed over "
        "by systemd"
    ) in result.stdout + result.stderr
