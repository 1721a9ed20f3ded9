"""
docs/nginx.conf, run for real: a real nginx in front of two real
C{twistd closedemo} instances, all on loopback ports, spoken to over
sockets.

The shipped file is rendered only by changing its ports and paths (see
L{render}).  nginx must be installed (.ci/run installs it); a machine
without it fails here rather than skipping, so that CI cannot pass
without running these.  Every wait has a deadline; every process is
stopped at the end.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from ..helpers import ZERO, replaced_once
from ..twistd_process import (
    LISTEN,
    Twistd,
    http_get,
    send_get,
    settled_stats,
    stats,
    wait_until,
)

CONF = Path(__file__).resolve().parents[2] / "docs" / "nginx.conf"
TICK = 0.2
GRACE = 3
# As docs/nginx.conf says: the instances believe nginx's X-Forwarded-For.
TRUST_NGINX = ("--trusted-proxy", "127.0.0.1")
OPTIONS = (
    *LISTEN,
    "--tick",
    str(TICK),
    "--shutdown-grace",
    str(GRACE),
    *TRUST_NGINX,
)
ACCESS_LINE = re.compile(
    r'"(?P<request>[^"]*)" (?P<status>\d+) \d+ upstream=(?P<upstream>.*) '
    r"upstream_status=(?P<upstream_status>.*) request_time="
)


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if found is None:
        pytest.fail(
            "nginx is not installed, so docs/nginx.conf cannot be tested: "
            "install it (Debian: apt-get install nginx; .ci/run does this)"
        )
    return found


def render(
    conf: str, *, listen: int, upstreams: tuple[int, int], directory: Path
) -> str:
    """
    The shipped config with its ports and paths changed to C{directory}'s,
    and nothing else: each replaced text must occur exactly once.
    """
    temp = "\n".join(
        f"    {kind}_temp_path {directory / 'temp' / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # As root, the workers would run as www-data, which may not exist and
    # cannot enter pytest's private temporary directory.  Otherwise nginx
    # ignores "user" (with a warning): drop it.
    user = "user root;" if os.geteuid() == 0 else ""
    replacements = {
        "user www-data;": user,
        "pid /run/nginx.pid;": f"pid {directory / 'nginx.pid'};",
        "error_log /var/log/nginx/error.log;": (
            f"error_log {directory / 'logs' / 'error.log'} info;"
        ),
        "access_log /var/log/nginx/closedemo.access.log closedemo;": (
            f"access_log {directory / 'logs' / 'access.log'} closedemo;"
        ),
        "http {\n": f"http {{\n{temp}\n",
        "server 127.0.0.1:8001;": f"server 127.0.0.1:{upstreams[0]};",
        "server 127.0.0.1:8002;": f"server 127.0.0.1:{upstreams[1]};",
        "listen 80;": f"listen 127.0.0.1:{listen};",
        "listen 80 default_server;": f"listen 127.0.0.1:{listen} default_server;",
    }
    conf = replaced_once(conf, replacements, "docs/nginx.conf")
    return conf


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


class Nginx:
    """
    nginx in the foreground (C{daemon off}) with its master and workers in
    a process group of their own.
    """

    def __init__(self, directory: Path, upstreams: tuple[int, int]) -> None:
        self.directory = directory
        for sub in ("logs", "temp"):
            (directory / sub).mkdir()
        self.port = free_port()
        self.conf = directory / "nginx.conf"
        self.conf.write_text(
            render(
                CONF.read_text(),
                listen=self.port,
                upstreams=upstreams,
                directory=directory,
            )
        )
        prefix, conf = f"{directory}/", str(self.conf)
        with open(directory / "logs" / "output", "wb") as output:
            self.process = subprocess.Popen(
                [nginx_binary(), "-p", prefix, "-c", conf, "-g", "daemon off;"],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}:\n{path.read_text(errors='replace')}"
            for path in sorted((self.directory / "logs").iterdir())
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 10
        while not accepts(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"nginx did not start:\n{self.logs()}")
            time.sleep(0.02)

    def access_log(self, lines: int | None = None) -> list[re.Match[str]]:
        """
        The access log's lines; with C{lines}, wait until it has that many:
        nginx logs a request after its answer has gone to the client.
        """

        def read() -> list[re.Match[str]]:
            text = (self.directory / "logs" / "access.log").read_text()
            return [m for s in text.splitlines() if (m := ACCESS_LINE.search(s))]

        if lines is not None:
            wait_until(lambda: len(read()) >= lines, f"{lines} access log lines", 5)
            assert len(read()) == lines, read()
        return read()

    def stop(self) -> None:
        # A fast shutdown (SIGTERM) ends the workers too; should the master
        # not answer, its group (workers included) is killed.
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)


@dataclass
class Cluster:
    a: Twistd
    b: Twistd
    a_port: int
    b_port: int
    nginx: Nginx

    @property
    def port(self) -> int:
        return self.nginx.port

    def pending(self) -> tuple[int, int]:
        return stats(self.a_port)["pending"], stats(self.b_port)["pending"]


@contextmanager
def running_cluster(
    directory: Path, a_options: Sequence[str] = (), options: Sequence[str] = ()
) -> Iterator[Cluster]:
    """
    Two closedemo instances behind nginx, configured by docs/nginx.conf;
    both get C{options}, instance a C{a_options} too.  Everything is stopped
    at the end.
    """
    nginx_binary()
    started: list[Twistd] = []
    proxy: Nginx | None = None
    try:
        for name, extra in (("a", a_options), ("b", ())):
            (directory / name).mkdir()
            started.append(Twistd(directory / name, *OPTIONS, *options, *extra))
        a, b = started
        ports = a.port(), b.port()
        (directory / "nginx").mkdir()
        proxy = Nginx(directory / "nginx", ports)
        proxy.wait_ready()
        yield Cluster(a, b, ports[0], ports[1], proxy)
    finally:
        if proxy is not None:
            proxy.stop()
        for server in started:
            server.kill()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(tmp_path) as running:
        yield running


def test_requests_are_spread_over_both_instances(cluster: Cluster) -> None:
    answers = [http_get(cluster.port, f"/quick/{i}?delay=0") for i in range(20)]

    assert answers == [(200, b"hello")] * 20
    a, b = settled_stats(cluster.a_port), settled_stats(cluster.b_port)
    assert a["completed"] > 0, a
    assert b["completed"] > 0, b
    assert a["completed"] + b["completed"] == 20
    assert a == {**ZERO, "completed": a["completed"]}
    assert b == {**ZERO, "completed": b["completed"]}
    upstreams = {m["upstream"] for m in cluster.nginx.access_log(20)}
    assert upstreams == {f"127.0.0.1:{cluster.a_port}", f"127.0.0.1:{cluster.b_port}"}


def test_a_client_leaving_nginx_is_reported_by_its_instance(cluster: Cluster) -> None:
    with socket.create_connection(
        ("127.0.0.1", cluster.port), timeout=5, source_address=("127.0.0.5", 0)
    ) as client:
        client.sendall(b"GET /slow?delay=10 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        wait_until(lambda: sum(cluster.pending()) == 1, "the request to be pending")
        holder, other = (
            (cluster.a, cluster.b) if cluster.pending()[0] else (cluster.b, cluster.a)
        )
    left = time.monotonic()

    # The client is the one nginx names in X-Forwarded-For (its port is
    # nginx's to know).
    holder.wait_for_line(
        r"Connection interrupted: GET /slow from 127\.0\.0\.5 after 0\.\d\d s "
        r"while waiting \(client closed the connection\)$",
        timeout=1.0,
    )
    assert time.monotonic() - left < 1.0
    holder_port = cluster.a_port if holder is cluster.a else cluster.b_port
    other_port = cluster.b_port if holder is cluster.a else cluster.a_port
    assert stats(holder_port) == {**ZERO, "interrupted": 1}
    assert stats(other_port) == ZERO
    assert len(holder.interruptions()) == 1
    assert other.interruptions() == []
    # nginx's own record of it: 499, client closed request.
    [line] = cluster.nginx.access_log(1)
    assert (line["request"], line["status"]) == ("GET /slow?delay=10 HTTP/1.1", "499")


def test_events_pass_through_nginx_unbuffered(cluster: Cluster) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", cluster.port, timeout=5)
    try:
        started = time.monotonic()
        connection.request("GET", "/events")
        response = connection.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Type", "").startswith("text/event-stream")
        arrivals: list[float] = []
        while len(arrivals) < 5 and time.monotonic() - started < 5:
            line = response.readline()  # the socket timeout bounds each read
            assert line, "the stream ended early"
            if line.startswith(b"data: "):
                arrivals.append(time.monotonic() - started)
    finally:
        connection.close()

    assert len(arrivals) == 5
    # The first event is due one tick after the instance took the request.
    assert arrivals[0] < 1.5 * TICK, arrivals
    # Each came at its tick, not in a burst when a buffer filled.
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert all(0.5 * TICK < gap < 2.5 * TICK for gap in gaps), arrivals
    # Leaving the stream through nginx ends it on the instance too.
    wait_until(
        lambda: len(cluster.a.interruptions() + cluster.b.interruptions()) == 1,
        "the stream's end to be reported",
        timeout=1.0,
    )
    [report] = cluster.a.interruptions() + cluster.b.interruptions()
    assert re.fullmatch(
        r"GET /events from 127\.0\.0\.1 after \d\.\d\d s while answering "
        r"\(client closed the connection; [56] events sent\)",
        report,
    ), report


def test_a_503_is_retried_on_the_other_instance(tmp_path: Path) -> None:
    # a takes one pending request at most: with one held, it answers 503.
    with running_cluster(tmp_path, ("--max-pending", "1")) as cluster:
        with socket.create_connection(("127.0.0.1", cluster.a_port)) as hold:
            hold.sendall(b"GET /hold?delay=10 HTTP/1.1\r\nHost: localhost\r\n\r\n")
            wait_until(lambda: cluster.pending() == (1, 0), "a to be full")
            answers = [http_get(cluster.port, f"/{i}?delay=0") for i in range(4)]
            a, b = settled_stats(cluster.a_port, 1), settled_stats(cluster.b_port)
        log = cluster.nginx.access_log(4)

    assert answers == [(200, b"hello")] * 4
    assert a == {**ZERO, "pending": 1, "rejected": 1}
    assert b == {**ZERO, "completed": 4}
    # Round robin sent one request to a, which nginx then sent to b; a
    # failed attempt marks a down for a while (max_fails=1 fail_timeout=10s
    # by default), so the others went straight to b.
    a_address, b_address = (f"127.0.0.1:{p}" for p in (cluster.a_port, cluster.b_port))
    assert Counter((line["upstream"], line["upstream_status"]) for line in log) == {
        (f"{a_address}, {b_address}", "503, 200"): 1,
        (b_address, "200"): 3,
    }


@dataclass
class Stop:
    """
    What happened when instance a was stopped with requests in flight.
    """

    a_pending: int
    b_pending: int
    in_flight: list[tuple[int, bytes]]
    during: list[tuple[int, bytes]]
    after: list[tuple[int, bytes]]
    a_was_draining: bool
    a_returncode: int
    a_output: str
    interruptions: list[str]
    b_counters: dict[str, int]
    a_address: str
    b_address: str
    log: list[dict[str, str]]
    nginx_logs: str


@pytest.fixture(scope="module")
def stop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stop]:
    """
    Ten requests in flight through nginx (0.5 to 0.95 s each), half on
    each instance; SIGTERM instance a (grace 3 s); ten new requests while it
    drains, five more once it has exited.
    """
    with running_cluster(tmp_path_factory.mktemp("stop")) as cluster:

        def get(path: str) -> tuple[int, bytes]:
            return http_get(cluster.port, path)

        with ThreadPoolExecutor(max_workers=10) as pool:
            in_flight = [
                pool.submit(get, f"/inflight/{i}?delay={0.5 + 0.05 * i:.2f}")
                for i in range(10)
            ]
            wait_until(lambda: sum(cluster.pending()) == 10, "10 pending requests")
            a_pending, b_pending = cluster.pending()

            cluster.a.process.send_signal(signal.SIGTERM)
            wait_until(lambda: not accepts(cluster.a_port), "a to stop accepting", 2)
            during = [get(f"/during/{i}?delay=0") for i in range(10)]
            a_was_draining = (
                cluster.a.process.poll() is None
                and "Shutdown drain" not in cluster.a.output
            )
            try:
                a_returncode = cluster.a.process.wait(timeout=GRACE + 5)
            except subprocess.TimeoutExpired:
                pytest.fail(f"a still runs after SIGTERM:\n{cluster.a.output}")
            after = [get(f"/after/{i}?delay=0") for i in range(5)]
            answers = [future.result(timeout=10) for future in in_flight]
        yield Stop(
            a_pending,
            b_pending,
            answers,
            during,
            after,
            a_was_draining,
            a_returncode,
            cluster.a.output,
            cluster.a.interruptions() + cluster.b.interruptions(),
            settled_stats(cluster.b_port),
            f"127.0.0.1:{cluster.a_port}",
            f"127.0.0.1:{cluster.b_port}",
            [line.groupdict() for line in cluster.nginx.access_log(25)],
            cluster.nginx.logs(),
        )


def test_stopping_an_instance_fails_no_client(stop: Stop) -> None:
    assert stop.a_pending > 0
    assert stop.b_pending > 0
    assert stop.a_pending + stop.b_pending == 10
    assert stop.in_flight == [(200, b"hello")] * 10
    assert stop.during == [(200, b"hello")] * 10
    assert stop.after == [(200, b"hello")] * 5
    assert stop.a_was_draining
    assert stop.a_returncode in (0, -signal.SIGTERM, 128 + signal.SIGTERM)
    assert len(stop.log) == 25
    assert {line["status"] for line in stop.log} == {"200"}
    assert stop.interruptions == []


def test_new_requests_go_to_the_other_instance(stop: Stop) -> None:
    new = [line for line in stop.log if "/inflight/" not in line["request"]]
    assert len(new) == 15
    # Every new request was answered by b.  Round robin offered a at least
    # one of them; a refused the connection (nginx logs that as 502) or,
    # on a kept-alive connection, answered 503; nginx then asked b.
    retried = [line for line in new if "," in line["upstream"]]
    assert retried, stop.nginx_logs
    for line in new:
        if line in retried:
            assert line["upstream"] == f"{stop.a_address}, {stop.b_address}"
            assert line["upstream_status"] in ("502, 200", "503, 200"), line
            assert "/during/" in line["request"], line
        else:
            assert (line["upstream"], line["upstream_status"]) == (
                stop.b_address,
                "200",
            ), line


def test_the_stopped_instance_finishes_its_own_requests(stop: Stop) -> None:
    assert (
        f"Shutdown drain: {stop.a_pending} answered normally, 0 answered 503, "
        "0 event streams ended, 0 interrupted by clients" in stop.a_output
    ), stop.a_output


def test_every_request_is_served_once(stop: Stop) -> None:
    in_flight = [line for line in stop.log if "/inflight/" in line["request"]]
    assert [line for line in in_flight if "," in line["upstream"]] == []
    assert stop.b_counters == {**ZERO, "completed": stop.b_pending + 15}


def test_nginx_answers_only_its_names(cluster: Cluster) -> None:
    for host in ("localhost", "127.0.0.1", f"127.0.0.1:{cluster.port}", "b3.localhost"):
        assert http_get(cluster.port, "/?delay=0", host=host) == (200, b"hello"), host
    for host in ("attacker.example", f"attacker.example:{cluster.port}"):
        status, _ = http_get(cluster.port, "/?delay=0", host=host)
        assert status == 421, host
    # The refused never reached an instance; the others were all answered.
    a, b = settled_stats(cluster.a_port), settled_stats(cluster.b_port)
    assert a["completed"] + b["completed"] == 4
    assert a["rejected"] + b["rejected"] == 0


def test_the_instances_allow_the_host_nginx_passes(cluster: Cluster) -> None:
    # What nginx passes, "Host: localhost", is the one instances answer to;
    # a name only nginx allows would be refused by them directly.
    assert http_get(cluster.a_port, "/stats", host="b3.localhost")[0] == 200
    assert http_get(cluster.a_port, "/stats", host="attacker.example")[0] == 421


def open_streams(
    stack: contextlib.ExitStack,
    port: int,
    source: str,
    n: int,
    paths: tuple[str, str] = ("/outcomes", "/events"),
) -> list[int]:
    statuses = []
    for i in range(n):
        connection = send_get(port, paths[i % 2], source=source)
        stack.callback(connection.close)
        statuses.append(connection.getresponse().status)
    return statuses


NGINX_BAD_PATH = b"a path with an empty, . or .. segment, or an encoded /\n"


def test_no_spelling_of_a_stream_path_escapes_its_limit(cluster: Cluster) -> None:
    # nginx would pick the location by the normalised path ("/events/.." is
    # "/", with no streams' limit_conn) and pass the raw one on: it refuses
    # them all itself, before any instance sees them.
    spellings = (
        "/events/..",
        "/events/.",
        "/outcomes/%2e%2e",
        "/events/%2E",
        "/events/.%2e/",
        "//events",
        "/x//outcomes",
        "/events%2F..",
        "/events/%2e%2e?delay=0",
    )
    with contextlib.ExitStack() as stack:
        assert open_streams(stack, cluster.port, "127.0.0.1", 8) == [200] * 8
        for path in spellings:
            assert http_get(cluster.port, path) == (400, NGINX_BAD_PATH), path
        # Still at the cap; other requests, and dots inside a segment, pass.
        assert open_streams(stack, cluster.port, "127.0.0.1", 1) == [429]
        assert http_get(cluster.port, "/a..b/.x?delay=0") == (200, b"hello")
        assert http_get(cluster.port, "/?x=/../&delay=0") == (200, b"hello")
    a, b = settled_stats(cluster.a_port), settled_stats(cluster.b_port)
    assert a["completed"] + b["completed"] == 2
    assert a["rejected"] + b["rejected"] == 0


def test_nginx_caps_each_clients_streams(cluster: Cluster) -> None:
    with contextlib.ExitStack() as stack:
        assert open_streams(stack, cluster.port, "127.0.0.1", 8) == [200] * 8
        # The ninth from the same client: nginx's limit_conn.
        assert open_streams(stack, cluster.port, "127.0.0.1", 1) == [429]
        # Two more clients get theirs: 24 streams from nginx's one address
        # to the instances, each counted against its own client there.
        for source in ("127.0.0.2", "127.0.0.3"):
            assert open_streams(stack, cluster.port, source, 8) == [200] * 8
        assert http_get(cluster.port, "/?delay=0") == (200, b"hello")
    a, b = settled_stats(cluster.a_port), settled_stats(cluster.b_port)
    assert a["rejected"] + b["rejected"] == 0


def test_two_users_through_nginx_each_get_their_own_caps(tmp_path: Path) -> None:
    # Instances capping each client at 2 streams, nginx spreading a user's
    # streams over both: 4 for each user, whatever the others hold.
    with (
        running_cluster(tmp_path, options=("--max-streams-per-client", "2")) as cluster,
        contextlib.ExitStack() as stack,
    ):
        events = ("/events", "/events")
        assert open_streams(stack, cluster.port, "127.0.0.2", 4, events) == [200] * 4
        # User A is at its cap on both instances: 429, which nginx passes on
        # (a 503 would mark the instance down for everyone).
        assert open_streams(stack, cluster.port, "127.0.0.2", 1, events) == [429]
        # User B, through the same nginx, is not held back by A.
        assert open_streams(stack, cluster.port, "127.0.0.3", 4, events) == [200] * 4
        stack.close()
        # Each instance reports the users, never nginx.
        wait_until(
            lambda: len(cluster.a.interruptions() + cluster.b.interruptions()) == 8,
            "8 streams ended",
        )
        clients = Counter(
            re.search(r" from (\S+) after", line)[1]  # type: ignore[index]
            for line in cluster.a.interruptions() + cluster.b.interruptions()
        )
        assert clients == {"127.0.0.2": 4, "127.0.0.3": 4}, clients


def test_nginx_limits_each_clients_request_rate(cluster: Cluster) -> None:
    # 50 a second with bursts of 100: 300 at once from one client are
    # more than that; another client is not held back by it.
    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = Counter(
            pool.map(lambda i: http_get(cluster.port, f"/r/{i}?delay=0")[0], range(300))
        )
    assert statuses[429] > 0, statuses
    assert statuses[200] >= 100, statuses
    assert set(statuses) == {200, 429}
    connection = send_get(cluster.port, "/other?delay=0", source="127.0.0.2")
    try:
        assert connection.getresponse().status == 200
    finally:
        connection.close()


def test_nginx_caps_each_clients_requests_in_hand(cluster: Cluster) -> None:
    # 100 held from one client; the 101st is refused by nginx at once.
    held = []
    try:
        for i in range(100):
            s = socket.create_connection(("127.0.0.1", cluster.port), timeout=10)
            held.append(s)
            s.sendall(
                f"GET /held/{i}?delay=30 HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()
            )
        wait_until(lambda: sum(cluster.pending()) == 100, "100 held requests")
        assert http_get(cluster.port, "/one-more?delay=0")[0] == 429
        connection = send_get(cluster.port, "/other?delay=0", source="127.0.0.2")
        try:
            assert connection.getresponse().status == 200
        finally:
            connection.close()
    finally:
        for s in held:
            s.close()


def test_stats_through_nginx_are_one_instances(cluster: Cluster) -> None:
    """
    The README: C{/stats} behind nginx is the counters of the instance that
    answered, not the sum.
    """
    for i in range(6):
        assert http_get(cluster.port, f"/quick/{i}?delay=0") == (200, b"hello")
    a, b = settled_stats(cluster.a_port), settled_stats(cluster.b_port)
    assert a["completed"] + b["completed"] == 6
    seen = [stats(cluster.port) for _ in range(2)]
    assert all(s in (a, b) for s in seen), (seen, a, b)
    assert {s["completed"] for s in seen} != {6}


def test_a_request_past_an_instances_grace_starts_over_elsewhere(
    tmp_path: Path,
) -> None:
    """
    The README: a request still pending when its instance's grace ends is
    answered 503 there and re-sent by nginx to the other instance, which
    starts it over; the client waits for the grace, then the whole delay.
    And the README's command stops nginx.
    """
    grace, delay = 1.0, 2.0
    with running_cluster(tmp_path, ("--shutdown-grace", str(grace))) as cluster:
        with ThreadPoolExecutor(max_workers=2) as pool:
            started = time.monotonic()
            answers = [pool.submit(http_get, cluster.port, f"/long?delay={delay}")]
            wait_until(lambda: sum(cluster.pending()) == 1, "a pending request")
            if cluster.pending() != (1, 0):  # round robin chose b: a is next
                answers.append(
                    pool.submit(http_get, cluster.port, f"/long?delay={delay}")
                )
                wait_until(lambda: cluster.pending() == (1, 1), "one on a")
            stopped = time.monotonic()
            cluster.a.process.send_signal(signal.SIGTERM)
            assert answers[-1].result(timeout=30) == (200, b"hello")
            took = time.monotonic() - started
        cluster.a.wait_for_line("Shutdown drain: 0 answered normally, 1 answered 503")
        log = cluster.nginx.access_log(len(answers))
        conf = str(cluster.nginx.conf)
        prefix = f"{cluster.nginx.directory}/"
        subprocess.run(
            [nginx_binary(), "-p", prefix, "-c", conf, "-s", "quit"],
            check=True,
            capture_output=True,
            timeout=10,
        )
        assert cluster.nginx.process.wait(timeout=10) == 0

    assert took >= (stopped - started) + grace + delay
    a, b = (f"127.0.0.1:{p}" for p in (cluster.a_port, cluster.b_port))
    assert (f"{a}, {b}", "503, 200") in [
        (line["upstream"], line["upstream_status"]) for line in log
    ], log
