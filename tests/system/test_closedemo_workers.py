"""
C{--workers N} end to end: one socket served by several processes, totals
across them, a worker that dies started again (its pending requests counted),
and a stop that stops all and leaves nothing behind.
"""

from __future__ import annotations

import errno
import http.client
import itertools
import json
import os
import re
import select
import signal
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import pytest

from twisted_close.closedemo.shared import SharedCounters

from ..test_closedemo_shared import leave_mid_write
from ..twistd_process import LISTEN, Twistd, http_get, send_get, stats, wait_until


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
def own_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """
    The server's temporary directory, its own so that others' files do not
    count: whatever the server leaves there is its.
    """
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setenv("TMPDIR", str(directory))
    return directory


@pytest.fixture
def pool(tmp_path: Path, own_tmp: Path) -> Iterator[tuple[Twistd, int]]:
    # A hundred clients at once from one address: no cap on its connections.
    server = Twistd(
        tmp_path, *LISTEN, "--workers", "2", "--delay", "0.3", "--shutdown-grace", "1",
        "--max-connections-per-client", "0",
    )  # fmt: skip
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


def test_no_other_process_can_join_the_port(pool: tuple[Twistd, int]) -> None:
    # One socket, opened once by the parent without SO_REUSEPORT: a
    # process of the same user asking for the port with it is refused,
    # instead of being handed a share of the connections.
    _, port = pool
    intruder = socket.socket()
    try:
        intruder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        with pytest.raises(OSError) as refused:
            intruder.bind(("127.0.0.1", port))
    finally:
        intruder.close()
    assert refused.value.errno == errno.EADDRINUSE


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


def test_workers_stop_when_the_parent_is_killed(
    pool: tuple[Twistd, int], own_tmp: Path
) -> None:
    server, port = pool
    many(port, 10)
    pids = list(worker_pids(server).values())
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(timeout=10)
    for pid in pids:
        wait_gone(pid, "orphaned worker")
    # Nothing of the server outlives it: its shared memory has no name.
    assert list(own_tmp.iterdir()) == []


def test_workers_need_plain_tcp(tmp_path: Path) -> None:
    from ..twistd_process import command, run_to_end

    result = run_to_end(
        command("--workers", "2", "--listen", f"unix:{tmp_path}/s.sock"), tmp_path
    )
    assert result.returncode != 0
    assert (
        "--workers shares plain tcp: or systemd:domain=INET/INET6 sockets only"
        in result.stdout + result.stderr
    )


COUNTERS = ("completed", "interrupted", "server_ended", "rejected")


def counted(totals: dict[str, int]) -> int:
    """
    The requests that have ended, however they ended.
    """
    return sum(totals[name] for name in COUNTERS)


class Load:
    """
    Light traffic from a few threads until stopped, bounded in count and
    time; requests that meet a dying worker just fail.
    """

    def __init__(self, port: int, limit: int = 3000, seconds: float = 90.0) -> None:
        self.port = port
        self.limit = limit
        self.deadline = time.monotonic() + seconds
        self.sent = 0
        self.failed = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(3)]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self.deadline:
            with self._lock:
                if self.sent >= self.limit:
                    return
                self.sent += 1
            try:
                http_get(self.port, "/load?delay=0.02")
            except (OSError, http.client.HTTPException):
                with self._lock:
                    self.failed += 1
            self._stop.wait(0.01)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)


class StatsPoller:
    """
    C{/stats} asked for again and again until stopped: every answer kept.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.answers: list[tuple[int, bytes]] = []
        self.refused = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.answers.append(http_get(self.port, "/stats"))
            except (OSError, http.client.HTTPException):
                # A connection the dying worker had accepted: no answer.
                self.refused += 1
            self._stop.wait(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def publishing(port: int, pid: int) -> bool:
    return pid in [w["pid"] for w in workers(port)]


def restarted(server: Twistd, slot: int, pid: int) -> bool:
    return worker_pids(server)[slot] != pid


def parent_counters(server: Twistd, slots: int) -> SharedCounters:
    """
    The server's shared counters, opened through its parent's descriptor.
    """
    for fd in Path(f"/proc/{server.process.pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("/memfd:closedemo-counters"):
            return SharedCounters.adopt(os.open(fd, os.O_RDWR), slots)
    raise AssertionError("no shared counters among the parent's descriptors")


def stats_answers(port: int, count: int) -> list[int]:
    """
    The status of C{count} answers to C{/stats}; connections the kernel
    gives a stopped worker time out and are tried again.
    """
    statuses: list[int] = []
    for _ in range(count * 10):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=0.5)
        try:
            connection.request("GET", "/stats")
            response = connection.getresponse()
            response.read()
            statuses.append(response.status)
        except (OSError, http.client.HTTPException):
            continue
        finally:
            connection.close()
        if len(statuses) == count:
            break
    return statuses


def test_a_worker_killed_again_and_again_under_load(
    pool: tuple[Twistd, int],
) -> None:
    server, port = pool
    counters = parent_counters(server, 2)
    load = Load(port)
    poller = StatsPoller(port)
    victims = []
    try:
        for kill in range(5):
            victim = worker_pids(server)[0]
            wait_until(
                partial(publishing, port, victim),
                f"worker 0 (pid {victim}) to publish",
            )
            wait_until(lambda: stats(port)["completed"] > 0, "some load to finish")
            if kill % 2 == 0:
                # Killed in the middle of publishing: its slot is left
                # half-written, and the other worker answers /stats all the
                # same.
                os.kill(victim, signal.SIGSTOP)
                try:
                    leave_mid_write(counters, 0, counters.read(0) or {})
                    answers = stats_answers(port, 3)
                finally:
                    os.kill(victim, signal.SIGKILL)
                assert answers == [200] * 3
            else:
                os.kill(victim, signal.SIGKILL)
            victims.append(victim)
            server.wait_for_line(
                rf"worker 0 \(pid {victim}\) was killed by SIGKILL with \d+ "
                r"requests pending; starting it again"
            )
            wait_until(partial(restarted, server, 0, victim), "worker 0 to start again")
        last = worker_pids(server)
        wait_until(
            lambda: {w["pid"] for w in workers(port)} == set(last.values()),
            "both current workers to publish",
        )
    finally:
        load.stop()
        poller.stop()
        counters.close()
    assert load.sent > 50, (load.sent, load.failed)
    assert len(poller.answers) > 50, (len(poller.answers), poller.refused)
    assert {status for status, _ in poller.answers} == {200}
    seen = [json.loads(body) for _, body in poller.answers]
    for before, after in itertools.pairwise(seen):
        for name in COUNTERS:
            assert after[name] >= before[name], (name, before, after)
    listed = workers(port)
    assert sorted(w["worker"] for w in listed) == [0, 1]
    assert all(alive(w["pid"]) for w in listed), listed
    assert not set(victims) & {w["pid"] for w in listed}
    assert "Traceback" not in server.output
    # The server still serves.
    assert http_get(port, "/after?delay=0") == (200, b"hello")


def metric(port: int, line: str) -> float:
    status, body = http_get(port, "/metrics")
    assert status == 200
    match = re.search(rf"^{re.escape(line)} (\S+)$", body.decode(), re.MULTILINE)
    assert match, f"no {line} in /metrics"
    return float(match.group(1))


def answer(client: socket.socket) -> bytes:
    """
    What the server sent on C{client} until it closed it; a reset is as
    good as a close.
    """
    received = b""
    try:
        while chunk := client.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def test_requests_pending_in_a_dead_worker_count_as_worker_died(
    pool: tuple[Twistd, int],
) -> None:
    server, port = pool
    sent = 10
    many(port, sent)
    clients: list[socket.socket] = []
    try:
        # The kernel picks the worker of each connection: open them until
        # one worker holds two.
        victim: dict[str, int] | None = None
        while victim is None and len(clients) < 30:
            client = socket.create_connection(("127.0.0.1", port), timeout=10)
            clients.append(client)
            client.sendall(b"GET /slow?delay=30 HTTP/1.1\r\nHost: localhost\r\n\r\n")
            sent += 1
            wait_until(
                lambda: stats(port)["pending"] == len(clients),
                "the request to be pending",
            )
            victim = next((w for w in workers(port) if w["pending"] >= 2), None)
        assert victim is not None, workers(port)
        held = victim["pending"]
        os.kill(victim["pid"], signal.SIGKILL)
        server.wait_for_line(
            rf"worker {victim['worker']} \(pid {victim['pid']}\) was killed by "
            rf"SIGKILL with {held} requests pending; starting it again"
        )
        # Its clients' connections end with no answer; the others' wait on.
        wait_until(
            lambda: len(select.select(clients, [], [], 0)[0]) >= held,
            "the dead worker's connections to end",
        )
        assert stats(port)["pending"] == len(clients) - held
        ended = select.select(clients, [], [], 0)[0]
        assert len(ended) == held
        assert all(answer(client) == b"" for client in ended)
    finally:
        # The requests still pending in the other worker: their clients leave.
        for client in clients:
            client.close()
    wait_until(lambda: stats(port)["pending"] == 0, "every request to end")
    totals = stats(port)
    assert counted(totals) == sent, totals
    assert totals["completed"] == 10
    assert totals["server_ended"] == held
    assert totals["interrupted"] == len(clients) - held
    ending = 'twisted_close_requests_server_ended_total{ending="worker_died"}'
    assert metric(port, ending) == held
    # The worker started again carries the count on.
    server.wait_for_line(rf"worker {victim['worker']} \(pid \d+\) serving")
    wait_until(
        lambda: victim["pid"] not in [w["pid"] for w in workers(port)],
        "the new worker to publish",
    )
    assert counted(stats(port)) == sent
    assert metric(port, ending) == held


def test_a_normal_stop_is_not_taken_for_the_parent_going(
    pool: tuple[Twistd, int], own_tmp: Path
) -> None:
    server, _ = pool
    pids = list(worker_pids(server).values())
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout=15)
    for pid in pids:
        wait_gone(pid)
    output = server.output
    # Both workers' own lines are in the output, and neither says that.
    assert output.count("Shutdown drain: ") == 2, output
    assert "the parent process has gone" not in output
    assert "all workers stopped; totals" in output
    assert list(own_tmp.iterdir()) == []


def test_a_stopped_worker_is_killed_and_its_share_goes_to_the_others(
    tmp_path: Path, own_tmp: Path
) -> None:
    server = Twistd(tmp_path, *LISTEN, "--workers", "2", "--worker-timeout", "2")
    try:
        port = server.port()
        server.wait_for_line(r"worker 1 \(pid \d+\) serving")
        server.wait_for_line(r"worker 0 \(pid \d+\) serving")
        victim = worker_pids(server)[0]
        os.kill(victim, signal.SIGSTOP)
        # One accept queue, the parent's: the stopped worker takes nothing
        # new, and whatever it holds ends when it is killed.
        for n in range(20):
            began = time.monotonic()
            assert http_get(port, f"/{n}?delay=0") == (200, b"hello")
            assert time.monotonic() - began < 2 + 1
        server.wait_for_line(
            rf"worker 0 \(pid {victim}\) has not beaten for \d+\.\d s; killing it"
        )
        server.wait_for_line(rf"worker 0 started \(pid (?!{victim}\))\d+\)")
        wait_gone(victim)
    finally:
        pids = worker_pids(server)
        server.kill()
        for pid in pids.values():
            wait_gone(pid)


def test_a_per_client_cap_holds_for_the_whole_server(tmp_path: Path) -> None:
    # Ten requests of one address at once, on two workers: five places in
    # all (counted in the shared memory), not five per worker.  Each worker
    # is paused while the other takes its five, so that both take some.
    server = Twistd(
        tmp_path, *LISTEN, "--workers", "2", "--max-pending-per-client", "5"
    )
    try:
        port = server.port()
        server.wait_for_line(r"worker 1 \(pid \d+\) serving")
        server.wait_for_line(r"worker 0 \(pid \d+\) serving")
        pids = worker_pids(server)
        connections: list[http.client.HTTPConnection] = []
        started = time.monotonic()
        for paused, serving in ((0, 1), (1, 0)):
            os.kill(pids[paused], signal.SIGSTOP)
            try:
                for _ in range(5):
                    connections.append(send_get(port, "/?delay=3"))
                wait_until(
                    lambda: (
                        sum(w["pending"] + w["rejected"] for w in workers(port))
                        >= len(connections)
                    ),
                    f"worker {serving} to take its five",
                )
            finally:
                os.kill(pids[paused], signal.SIGCONT)

        def answer(connection: http.client.HTTPConnection) -> tuple[int, float]:
            response = connection.getresponse()
            response.read()
            connection.close()
            return response.status, time.monotonic() - started

        each = workers(port)
        with ThreadPoolExecutor(max_workers=10) as threads:
            answers = list(threads.map(answer, connections))
        # The first worker took five; the second refused its five at once.
        assert [s for s, _ in answers] == [200] * 5 + [429] * 5, answers
        assert max(when for _, when in answers[5:]) < 2.0, answers
        assert min(when for _, when in answers[:5]) > 2.9, answers
        assert sorted((w["pending"], w["rejected"]) for w in each) == [(0, 5), (5, 0)]
    finally:
        pids = worker_pids(server)
        server.kill()
        for pid in pids.values():
            wait_gone(pid)
