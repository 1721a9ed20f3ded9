"""The peers: how to start each on a free loopback port, wait for it, read
its counters and its memory, and stop it.
"""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import cache, partial
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path

HOST = "127.0.0.1"
HERE = Path(__file__).resolve().parent
PEER_NAMES = (
    "closedemo",
    "bare_twisted",
    "node",
    "aiohttp",
    "closedemo_workers",
    "closedemo_asyncio",
    "closedemo_written",
    "bare_twisted_workers",
    "bare_twisted_aa",
)
WORKERS = 2
BASELINE = "bare_twisted"
# The closedemo peers, each with what it adds to closedemo's command line.
CLOSEDEMO_OPTIONS = {
    "closedemo": [],
    "closedemo_workers": ["--workers", str(WORKERS)],
    "closedemo_asyncio": [],
    # What confirming each answer's acknowledgement costs: the same server
    # counting an answer completed once written.
    "closedemo_written": ["--delivery", "written"],
}


def single_process(name: str) -> bool:
    """Whether peer C{name} serves from one process (not the C{_workers} ones)."""
    return not name.endswith("_workers")


class HarnessError(Exception):
    """The harness itself broke (a peer did not start, a count never converged):
    the only reason to exit non-zero.
    """


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def tool(name: str) -> str:
    """C{name} from this virtualenv's bin if there, else from PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name) or name


def command(name: str, port: int, workdir: Path) -> list[str] | str:
    """The command line of peer C{name}, or the reason it cannot run here."""
    if name in CLOSEDEMO_OPTIONS:
        reactor = "asyncio" if name == "closedemo_asyncio" else "epoll"
        return [
            tool("twistd"), "-n", "--pidfile=", "-r", reactor,
            "--logfile", str(workdir / f"{name}.log"), "closedemo",
            "--listen", f"tcp:{port}:interface={HOST}:backlog=4096",
            "--delay", "0", "--max-delay", "3600", *_closedemo_limits(),
            *CLOSEDEMO_OPTIONS[name],
        ]  # fmt: skip
    if name in ("bare_twisted", "bare_twisted_aa", "bare_twisted_workers"):
        workers = ["--workers", str(WORKERS)] if name.endswith("_workers") else []
        bare = HERE / "peers" / "bare_twisted.py"
        return [sys.executable, str(bare), str(port), *workers]
    if name == "node":
        node = shutil.which("node")
        if node is None:
            return "`node` is not on PATH"
        return [node, str(HERE / "peers" / "node_server.js"), str(port)]
    if name == "aiohttp":
        if find_spec("aiohttp") is None:
            return "aiohttp is not installed (pip install aiohttp)"
        return [sys.executable, str(HERE / "peers" / "aiohttp_server.py"), str(port)]
    raise ValueError(f"unknown peer {name!r}")


@cache
def _closedemo_limits() -> list[str]:
    """Lift closedemo's limits that would refuse or cut the benchmark's load,
    for those options this version of closedemo has.
    """
    usage = _run(tool("twistd"), "closedemo", "--help")
    limits = {"--max-pending": "1000000", "--idle-timeout": "3600"}
    # All the load comes from one address: no per-client caps.
    limits |= {"--max-streams-per-client": "0", "--max-pending-per-client": "0"}
    limits |= {"--max-connections-per-client": "0"}
    return [a for o, v in limits.items() if o in usage for a in (o, v)]


def get_stats(port: int, timeout: float = 30.0) -> dict[str, int]:
    """C{GET /stats} on a fresh connection; the JSON counters."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(
            b"GET /stats HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise HarnessError(f"/stats on port {port} answered {head[:60]!r}")
    stats: dict[str, int] = json.loads(body)
    return stats


def wait_until(port: int, key: str, target: int, timeout: float, what: str) -> float:
    """Poll C{/stats} until C{key} reaches C{target}; the monotonic time it did."""
    deadline = time.monotonic() + timeout
    while True:
        stats = get_stats(port)
        now = time.monotonic()
        if stats[key] >= target:
            return now
        if now > deadline:
            raise HarnessError(
                f"{what}: {key} did not reach {target} within {timeout:g} s "
                f"(last /stats: {stats})"
            )
        time.sleep(0.002)


@dataclass
class Peer:
    name: str
    argv: list[str]
    port: int
    output: Path
    cpus: set[int] | None = None  # pinned to these (and its children), if set
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        # Pinned before exec: threads and workers it starts inherit it.
        pin = None if self.cpus is None else partial(os.sched_setaffinity, 0, self.cpus)
        with self.output.open("wb") as out:
            self.process = subprocess.Popen(
                self.argv, stdout=out, stderr=out, preexec_fn=pin
            )

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                break
            try:
                get_stats(self.port, timeout=2.0)
                return
            except OSError:
                time.sleep(0.1)
        raise HarnessError(f"peer {self.name} did not start:\n{self.tail()}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def rss_kib(self) -> int:
        """VmRSS of the peer's processes (its workers too), from /proc."""
        return sum(_rss_kib(pid) for pid in [self.pid, *_children(self.pid)])

    def cpu_seconds(self) -> float:
        """CPU time of the peer's processes (its workers too) and all their
        threads so far, from the scheduler's nanosecond count.
        """
        return sum(_cpu_ns(pid) for pid in [self.pid, *_children(self.pid)]) / 1e9

    def tail(self, lines: int = 15) -> str:
        text = self.output.read_text(errors="replace") if self.output.exists() else ""
        return "\n".join(text.splitlines()[-lines:]) or "(no output)"

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise HarnessError(f"no VmRSS for pid {pid}")


def _cpu_ns(pid: int) -> int:
    total = 0
    for task in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(task.read_text().split()[0])
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended meanwhile
    return total


def _children(pid: int) -> list[int]:
    """The processes whose parent is C{pid} (closedemo's workers)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def versions() -> dict[str, str]:
    """The machine and the versions of everything measured."""
    cpu = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
    node = shutil.which("node")
    git = ["git", "-C", str(HERE.parent)]
    dirty = _run(*git, "status", "--porcelain", "twisted_close")
    return {
        "cpu": cpu[1] if cpu else "unknown",
        "cores": str(os.cpu_count()),
        "kernel": os.uname().release,
        "loadavg": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "python": platform.python_version(),
        "twisted": _version("twisted"),
        "aiohttp": _version("aiohttp"),
        "node": _run(node, "--version").lstrip("v") if node else "not installed",
        "closedemo_commit": _run(*git, "rev-parse", "--short", "HEAD")
        + ("+dirty" if dirty else ""),
    }


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _run(*argv: str) -> str:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=60
    ).stdout.strip()


def raise_nofile(need: int) -> None:
    """Let this process (and the peers, which inherit it) open C{need} files."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, max(hard, need)))
    except (ValueError, OSError):
        if hard < need:
            raise HarnessError(
                f"need {need} open files, the hard limit is {hard}: lower --held/--due"
            ) from None
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
