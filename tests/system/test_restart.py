"""
Restart under load (SIGHUP), end to end on real sockets: a client keeps
short requests and 3 s requests going while closedemo is restarted five
times in a row, as one process and with C{--workers 2}.  No connection is
refused or reset, every answer is a 200 on the connection that asked (so
from the generation that accepted it), and C{/stats} never goes down and
ends equal to the requests sent.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import twisted_close
from twisted_close.closedemo.restart import SETTLE

from ..twistd_process import LISTEN, Twistd, http_connection, http_get, wait_until
from .test_closedemo_workers import alive

SHORT_RATE = 200
"""Short requests a second (when the machine keeps up)."""

LONG = 100
"""3 s requests kept in flight."""

RESTARTS = 5

TOTALS = ("completed", "interrupted", "rejected", "server_ended")


@dataclass
class Load:
    """
    What the client saw: each request's start, end and status, or error.
    """

    port: int
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    answers: list[tuple[str, float, float, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stats: list[dict[str, int]] = field(default_factory=list)

    def get(self, path: str, kind: str) -> None:
        started = time.monotonic()
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=20) as c:
                c.sendall(
                    f"GET {path} HTTP/1.1\r\nHost: localhost\r\n"
                    "Connection: close\r\n\r\n".encode()
                )
                data = b""
                while chunk := c.recv(65536):
                    data += chunk
        except ConnectionRefusedError:
            self.error(f"{kind} {path}: refused")
            return
        except OSError as e:
            self.error(f"{kind} {path}: {e!r}")
            return
        if not data.startswith(b"HTTP/1.1 "):
            self.error(f"{kind} {path}: no answer ({data[:40]!r})")
            return
        status = int(data[9:12])
        if kind == "stats":
            with self.lock:
                self.stats.append(json.loads(data.partition(b"\r\n\r\n")[2]))
            return
        with self.lock:
            self.answers.append((kind, started, time.monotonic(), status))

    def error(self, what: str) -> None:
        with self.lock:
            self.errors.append(what)

    def long(self) -> None:
        while not self.stopping.is_set():
            self.get("/?delay=3", "long")

    def short(self, rate: float) -> None:
        n = 0
        began = time.monotonic()
        while not self.stopping.is_set():
            self.get(f"/short{n}?delay=0", "short")
            n += 1
            pause = began + n / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)

    def watch_stats(self) -> None:
        while not self.stopping.is_set():
            self.get("/stats", "stats")
            time.sleep(0.1)


def generations(server: Twistd) -> list[int]:
    """
    Every closedemo process the test started, directly or by a restart:
    the generations and their workers.
    """
    found = re.findall(r"generation \d+ \(pid (\d+)\)", server.output)
    found += re.findall(r"worker \d+ started \(pid (\d+)\)", server.output)
    return sorted({int(pid) for pid in found} | {server.process.pid})


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[Twistd]]:
    servers: list[Twistd] = []
    try:
        yield servers
    finally:
        for server in servers:
            # Later generations are not our children: end them by pid.
            for pid in generations(server):
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
            server.kill()


def restart_under_load(tmp_path: Path, servers: list[Twistd], *options: str) -> None:
    pidfile = tmp_path / "twistd.pid"
    server = Twistd(
        tmp_path,
        *LISTEN,
        "--shutdown-grace",
        "10",
        # The load comes from one address: more connections than one
        # client may hold by default.
        "--max-connections-per-client",
        "0",
        *options,
        logging=("--logfile=-", f"--pidfile={pidfile}"),
    )
    servers.append(server)
    port = server.port()
    wait_until(pidfile.exists, "the pidfile")
    load = Load(port)
    threads = [threading.Thread(target=load.long) for _ in range(LONG)]
    threads += [
        threading.Thread(target=load.short, args=(SHORT_RATE / 10,)) for _ in range(10)
    ]
    threads.append(threading.Thread(target=load.watch_stats))
    for thread in threads:
        thread.start()
    restarts: list[float] = []
    pids = [int(pidfile.read_text())]
    try:
        time.sleep(1.5)
        for n in range(RESTARTS):
            os.kill(pids[-1], signal.SIGHUP)
            server.wait_for_line(
                rf"generation {n + 2} \(pid (\d+)\) took over", timeout=20
            )
            restarts.append(time.monotonic())
            pids.append(int(pidfile.read_text()))
            time.sleep(1.0)
    finally:
        load.stopping.set()
        for thread in threads:
            thread.join(timeout=30)
    # Each restart was a fresh process, and each old one has gone.
    assert len(set(pids)) == RESTARTS + 1, pids
    wait_until(
        lambda: not any(alive(pid) for pid in pids[:-1]), "old generations to exit"
    )
    assert load.errors == [], load.errors[:20]
    statuses = {status for _, _, _, status in load.answers}
    assert statuses == {200}, statuses
    # 3 s requests were in flight across every restart, each answered
    # on the connection (so by the generation) that took it.
    for at in restarts:
        across = [a for a in load.answers if a[0] == "long" and a[1] < at < a[2]]
        assert len(across) >= LONG // 2, (at, len(across))
    short = [a for a in load.answers if a[0] == "short"]
    seconds = restarts[-1] - restarts[0] + 2.5
    print(f"{len(short)} short requests, {len(load.answers) - len(short)} long")
    print(f"short rate ~{len(short) / (seconds + 1.5):.0f}/s; restarts at {restarts}")
    # /stats never went down, and ends equal to the requests sent.
    for field_ in TOTALS:
        seen = [s[field_] for s in load.stats]
        assert seen == sorted(seen), (field_, seen)
    assert len(load.stats) > 50

    def final() -> dict[str, int]:
        load.stats.clear()
        load.get("/stats", "stats")
        return load.stats[-1]

    wait_until(
        lambda: final()["completed"] == len(load.answers), "the totals", timeout=15
    )
    totals = final()
    assert {k: totals[k] for k in ("pending", *TOTALS)} == {
        "pending": 0,
        "completed": len(load.answers),
        "interrupted": 0,
        "rejected": 0,
        "server_ended": 0,
    }
    status, metrics = http_get(port, "/metrics")
    assert status == 200
    completed = f"twisted_close_requests_completed_total {len(load.answers)}.0\n"
    assert completed.encode() in metrics
    # The pidfile names the serving generation, and a stop removes it.
    assert int(pidfile.read_text()) == pids[-1]
    os.kill(pids[-1], signal.SIGTERM)
    wait_until(lambda: not alive(pids[-1]), "the last generation to stop", 20)
    assert not pidfile.exists()
    assert "Traceback" not in server.output


def test_restarts_under_load_lose_nothing(
    tmp_path: Path, started: list[Twistd]
) -> None:
    restart_under_load(tmp_path, started)


def test_restarts_of_workers_under_load_lose_nothing(
    tmp_path: Path, started: list[Twistd]
) -> None:
    restart_under_load(tmp_path, started, "--workers", "2")


def test_a_kept_alive_connection_of_the_old_generation(
    tmp_path: Path, started: list[Twistd]
) -> None:
    # Once the old generation finishes its requests, what arrives on a
    # connection it kept alive is answered 503 with Connection: close; a
    # fresh connection reaches the new generation.
    pidfile = tmp_path / "twistd.pid"
    server = Twistd(tmp_path, *LISTEN, logging=("--logfile=-", f"--pidfile={pidfile}"))
    started.append(server)
    port = server.port()
    wait_until(pidfile.exists, "the pidfile")
    kept = http_connection(port)
    kept.request("GET", "/?delay=0")
    first = kept.getresponse()
    assert (first.status, first.read()) == (200, b"hello")
    held = http_connection(port)
    held.request("GET", "/?delay=3")  # keeps the old generation finishing
    wait_until(lambda: b'"pending": 1' in http_get(port, "/stats")[1], "pending")
    os.kill(int(pidfile.read_text()), signal.SIGHUP)
    server.wait_for_line(r"generation 2 \(pid \d+\) took over")
    time.sleep(SETTLE + 0.5)
    kept.request("GET", "/?delay=0")
    refused = kept.getresponse()
    assert refused.status == 503
    assert refused.getheader("Connection") == "close"
    assert refused.getheader("Retry-After") is not None
    refused.read()
    assert http_get(port, "/?delay=0") == (200, b"hello")
    answer = held.getresponse()
    assert (answer.status, answer.read()) == (200, b"hello")


def test_a_restart_runs_the_code_installed_since(
    tmp_path: Path, started: list[Twistd], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The next generation is a fresh exec: a change to the installed code
    # (here, a copy of it whose default message is edited) is what serves.
    source = tmp_path / "src"
    shutil.copytree(
        Path(twisted_close.__file__).parent,
        source / "twisted_close",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    (source / "twisted" / "plugins").mkdir(parents=True)
    plugin = Path(__file__).parents[2] / "twisted" / "plugins" / "closedemo.py"
    shutil.copy(plugin, source / "twisted" / "plugins")
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv(
        "PYTHONPATH", f"{source}{os.pathsep}{path}" if path else str(source)
    )
    pidfile = tmp_path / "twistd.pid"
    server = Twistd(
        tmp_path,
        *LISTEN,
        "--delay",
        "0",
        logging=("--logfile=-", f"--pidfile={pidfile}"),
    )
    started.append(server)
    port = server.port()
    wait_until(pidfile.exists, "the pidfile")
    assert http_get(port, "/") == (200, b"hello")
    tap = source / "twisted_close" / "closedemo" / "tap.py"
    text = tap.read_text()
    assert '["message", "m", "hello",' in text
    tap.write_text(
        text.replace('["message", "m", "hello",', '["message", "m", "upgraded",')
    )
    os.kill(int(pidfile.read_text()), signal.SIGHUP)
    server.wait_for_line(r"generation 2 \(pid \d+\) took over")
    assert http_get(port, "/") == (200, b"upgraded")
