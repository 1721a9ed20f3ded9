"""
Run the installed closedemo plugin through the real C{twistd} command as a
subprocess, read its log line by line, and speak to it over sockets.

Shared by the end-to-end tests (C{test_twistd}, C{test_nginx}).  Every
wait has a deadline.

twistd runs on the reactor this test process runs on (C{pytest
--reactor=asyncio} runs it with C{-r asyncio}), or on the one named by
C{TWISTED_CLOSE_TEST_REACTOR} (C{asyncio}, C{epoll}, ...), so the same tests
run on either.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "INTERRUPTED",
    "LISTEN",
    "Twistd",
    "command",
    "environment",
    "http_connection",
    "http_get",
    "reactor_options",
    "run_to_end",
    "send_get",
    "started_in",
    "stats",
    "twistd_command",
    "wait_until",
]

LISTEN = ("--listen", "tcp:0:interface=127.0.0.1")
INTERRUPTED = re.compile(r"Connection interrupted: (.*)$")


def twistd_command() -> list[str]:
    """
    The twistd script installed next to this Python, run by this Python.
    """
    script = Path(sys.executable).with_name("twistd")
    if script.is_file():
        return [sys.executable, str(script)]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


REACTOR_VARIABLE = "TWISTED_CLOSE_TEST_REACTOR"


def twistd_reactor() -> str | None:
    """
    The reactor twistd is to run on: C{$TWISTED_CLOSE_TEST_REACTOR}, else
    C{asyncio} if this process runs the asyncio reactor, else twistd's
    default (L{None}).
    """
    named = os.environ.get(REACTOR_VARIABLE)
    if named:
        return named
    installed = sys.modules.get("twisted.internet.reactor")
    asyncioreactor = sys.modules.get("twisted.internet.asyncioreactor")
    if asyncioreactor is not None and isinstance(
        installed, asyncioreactor.AsyncioSelectorReactor
    ):
        return "asyncio"
    return None


def reactor_options() -> list[str]:
    """
    twistd's own options to run on L{twistd_reactor}.
    """
    name = twistd_reactor()
    return [] if name is None else [f"--reactor={name}"]


def command(*options: str, logging: tuple[str, ...] = ("--logfile=-",)) -> list[str]:
    """
    twistd closedemo with C{options}; C{logging} are twistd's own options.
    """
    return [
        *twistd_command(),
        "-n",
        *reactor_options(),
        "--pidfile=",
        *logging,
        "closedemo",
        *options,
    ]


def environment(**more: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(more)
    return env


def run_to_end(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """
    Run C{argv} in C{cwd} until it exits (60 s at most), its output captured.
    """
    return subprocess.run(
        argv,
        cwd=cwd,
        env=environment(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


class Twistd:
    """
    A running C{twistd closedemo} (or, given C{argv}, any command), with its
    output read line by line and the moment each line arrived.
    """

    def __init__(
        self,
        cwd: Path,
        *options: str,
        logging: tuple[str, ...] = ("--logfile=-",),
        argv: list[str] | None = None,
        preexec_fn: Callable[[], object] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.process = subprocess.Popen(
            command(*options, logging=logging) if argv is None else argv,
            cwd=cwd,
            env=environment(**(env or {})),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=preexec_fn,
        )
        self.lines: list[str] = []
        self.arrived: list[float] = []  # time.monotonic() of each line
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.arrived.append(time.monotonic())
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for_line(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """
        The first line matching C{pattern}, waiting up to C{timeout} seconds.
        """
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if match := regex.search(line):
                        return match
                left = deadline - time.monotonic()
                if left <= 0 or not self._reader.is_alive():
                    raise AssertionError(
                        f"no line matching {pattern!r} within {timeout} s; "
                        f"output so far:\n{chr(10).join(self.lines)}"
                    )
                self._changed.wait(left)

    def arrival(self, match: re.Match[str]) -> float:
        """
        When the line of C{match}, from L{wait_for_line}, was read.
        """
        with self._changed:
            return self.arrived[self.lines.index(match.string)]

    def port(self) -> int:
        match = self.wait_for_line(
            r"closedemo listening on 127\.0\.0\.1:(\d+) \(tcp:0:", timeout=30
        )
        return int(match.group(1))

    def interruptions(self) -> list[str]:
        with self._changed:
            return [
                m.group(1) for line in self.lines if (m := INTERRUPTED.search(line))
            ]

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        self._reader.join(timeout=10)
        assert self.process.stdout is not None
        self.process.stdout.close()


@contextmanager
def started_in(cwd: Path) -> Iterator[Callable[..., Twistd]]:
    """
    A starter of L{Twistd}s in C{cwd} (given what L{Twistd} takes after
    C{cwd}); every one it started is killed at the end.
    """
    started: list[Twistd] = []

    def start(*options: str, **settings: Any) -> Twistd:
        started.append(Twistd(cwd, *options, **settings))
        return started[-1]

    try:
        yield start
    finally:
        for server in started:
            server.kill()


def http_connection(port: int, source: str | None = None) -> http.client.HTTPConnection:
    """
    A connection to 127.0.0.1:C{port} (10 s timeout), made from the address
    C{source} where given.
    """
    return http.client.HTTPConnection(
        "127.0.0.1",
        port,
        timeout=10,
        source_address=None if source is None else (source, 0),
    )


def send_get(
    port: int, path: str, *, source: str | None = None, host: str = ""
) -> http.client.HTTPConnection:
    """
    A GET of C{path} sent, made from the address C{source} and with C{host}
    as its Host header where given; the connection, for its response.
    """
    connection = http_connection(port, source)
    connection.putrequest("GET", path, skip_host=bool(host))
    if host:
        connection.putheader("Host", host)
    connection.endheaders()
    return connection


def http_get(
    port: int, path: str, *, source: str | None = None, host: str = ""
) -> tuple[int, bytes]:
    """
    GET C{path} as L{send_get} does: the status and body.
    """
    connection = send_get(port, path, source=source, host=host)
    try:
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def stats(port: int) -> dict[str, int]:
    """
    The counters of C{/stats}, without its breakdown of the requests cut
    short by phase (L{phases}).
    """
    status, body = http_get(port, "/stats")
    assert status == 200
    data = json.loads(body)
    data.pop("cut_short_by_phase")
    return dict(data)


def phases(port: int) -> dict[str, int]:
    """
    C{/stats}' requests cut short, by the phase they were in.
    """
    status, body = http_get(port, "/stats")
    assert status == 200
    found: dict[str, int] = json.loads(body)["cut_short_by_phase"]
    return found


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def settled_stats(port: int, pending: int = 0) -> dict[str, int]:
    """
    The counters once only C{pending} requests are left: an answer counts
    as completed when the client's TCP acknowledged it, a moment after the
    client read it.
    """
    wait_until(lambda: stats(port)["pending"] == pending, f"{pending} pending")
    return stats(port)
