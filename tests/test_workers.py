"""
C{--workers N} end to end: one socket served by several processes, totals
across them, a worker that dies started again, and a stop that stops all.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .twistd_process import LISTEN, Twistd, http_get, stats, wait_until


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0): ask /proc whether it has ended.
    try:
        return " Z " not in Path(f"/proc/{pid}/stat").read_text().split(")", 1)[1][:3]
    except FileNotFoundError:
        return False


def wait_gone(pid: int, what: str = "worker") -> None:
    wait_until(lambda: not alive(pid), f"{what} {pid} to end")


def workers(port: int) -> list[dict[str, int]]:
    """
    The per-worker part of C{/stats}.
    """
    status, body = http_get(port, "/stats")
    assert status == 200
    listed: list[dict[str, int]] = json.loads(body)["workers"]
    return listed


def worker_pids(server: Twistd) -> dict[int, int]:
    started = re.findall(r"worker (\d+) started \(pid (\d+)\)", server.output)
    return {int(slot): int(pid) for slot, pid in started}


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[tuple[Twistd, int]]:
    server = Twistd(
        tmp_path, *LISTEN, "--workers", "2", "--delay", "0.3", "--shutdown-grace", "1"
    )
    try:
        port = server.port()
        server.wait_for_line(r"worker 1 \(pid \d+\) serving")
        server.wait_for_line(r"worker 0 \(pid \d+\) serving")
        yield server, port
    finally:
        pids = worker_pids(server)
        server.kill()
        for pid in pids.values():
            wait_gone(pid)


def many(port: int, count: int) -> list[tuple[int, bytes]]:
    with ThreadPoolExecutor(max_workers=100) as threads:
        return list(threads.map(lambda n: http_get(port, f"/{n}"), range(count)))


def test_both_workers_serve_and_stats_add_up(pool: tuple[Twistd, int]) -> None:
    _, port = pool
    answers = many(port, 400)
    assert answers == [(200, b"hello")] * 400
    wait_until(lambda: stats(port)["completed"] == 400, "the totals to add up")
    totals = stats(port)
    each = workers(port)
    del totals["workers"]
    assert totals == {
        "pending": 0,
        "completed": 400,
        "interrupted": 0,
        "rejected": 0,
        "server_ended": 0,
    }
    assert sorted(w["worker"] for w in each) == [0, 1]
    assert all(w["completed"] > 0 for w in each), each
    assert sum(w["completed"] for w in each) == 400
    status, metrics = http_get(port, "/metrics")
    assert status == 200
    assert b"twisted_close_requests_completed_total 400.0\n" in metrics


def test_a_worker_that_dies_is_reported_and_started_again(
    pool: tuple[Twistd, int],
) -> None:
    server, port = pool
    many(port, 100)
    wait_until(lambda: stats(port)["completed"] == 100, "the totals to add up")
    victim = worker_pids(server)[0]
    os.kill(victim, signal.SIGKILL)
    line = server.wait_for_line(
        rf"worker 0 \(pid {victim}\) was killed by SIGKILL with 0 requests "
        r"pending; starting it again"
    )
    assert line
    server.wait_for_line(rf"worker 0 started \(pid (?!{victim}\))\d+\)")
    wait_until(
        lambda: victim not in [w["pid"] for w in workers(port)],
        "the new worker to publish",
    )
    # The totals do not go back: the new worker carries on from its slot.
    assert stats(port)["completed"] == 100
    many(port, 50)
    wait_until(lambda: stats(port)["completed"] == 150, "the totals to add up")


def test_a_stop_drains_every_worker(pool: tuple[Twistd, int]) -> None:
    server, port = pool
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(b"GET /slow?delay=30 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        wait_until(lambda: stats(port)["pending"] == 1, "the request to be pending")
        pids = list(worker_pids(server).values())
        server.process.send_signal(signal.SIGTERM)
        returncode = server.process.wait(timeout=15)
        answer = client.recv(65536)
    assert returncode in (0, -signal.SIGTERM, 128 + signal.SIGTERM)
    assert answer.startswith(b"HTTP/1.1 503 ")
    for pid in pids:
        wait_gone(pid)
    output = server.output
    assert "Traceback" not in output
    assert "all workers stopped; totals" in output
    assert "1 answered 503" in output


def test_workers_stop_when_the_parent_is_killed(pool: tuple[Twistd, int]) -> None:
    server, _ = pool
    pids = list(worker_pids(server).values())
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(timeout=10)
    for pid in pids:
        wait_gone(pid, "orphaned worker")


def test_workers_need_plain_tcp(tmp_path: Path) -> None:
    from .twistd_process import command, environment

    result = subprocess.run(
        command("--workers", "2", "--listen", f"unix:{tmp_path}/s.sock"),
        cwd=tmp_path,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "--workers shares plain tcp: sockets only" in result.stdout + result.stderr
