"""The load: requests per second (wrk, or an asyncio generator), N held requests
aborted at once, and M answers due at the same instant.
"""

from __future__ import annotations

import asyncio
import os
import re
import select
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Callable
from functools import partial

from ._peers import HOST, HarnessError, get_stats, wait_until

RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a RST
# Linux: bind an address now, pick the port at connect() (by destination).
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
_LENGTH = re.compile(rb"(?im)^content-length:\s*(\d+)")


def load_generator(choice: str) -> str:
    """C{"wrk"} when asked for or found on PATH (for C{"auto"}), else C{"asyncio"}."""
    if choice == "wrk" and shutil.which("wrk") is None:
        raise HarnessError("--load wrk: `wrk` is not on PATH (apt-get install wrk)")
    if choice == "auto":
        return "wrk" if shutil.which("wrk") else "asyncio"
    return choice


def requests_per_second(
    port: int, seconds: float, conns: int, tool: str, cpus: set[int] | None = None
) -> float:
    """Delay-0 requests per second over C{conns} keep-alive connections."""
    return load_slice(port, seconds, conns, tool, cpus)[0]


def load_slice(
    port: int, seconds: float, conns: int, tool: str, cpus: set[int] | None = None
) -> tuple[float, int]:
    """Delay-0 load over C{conns} keep-alive connections: the requests per
    second and the requests answered; wrk runs on C{cpus} if given (the
    asyncio client runs in this process, as is).
    """
    url = f"http://{HOST}:{port}/rps?delay=0"
    if tool == "asyncio":
        return asyncio.run(_asyncio_rps(port, seconds, conns))
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{max(1, round(seconds))}s", url]
    run = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        preexec_fn=None if cpus is None else partial(os.sched_setaffinity, 0, cpus),
    )
    found = re.search(r"Requests/sec:\s*([\d.]+)", run.stdout)
    count = re.search(r"(\d+) requests in", run.stdout)
    if run.returncode or found is None or count is None or "Non-2xx" in run.stdout:
        raise HarnessError(f"wrk failed on port {port}:\n{run.stdout}{run.stderr}")
    if errors := re.search(r"Socket errors: .*", run.stdout):
        print(f"  warning: wrk on port {port}: {errors[0]}", flush=True)
    return float(found[1]), int(count[1])


async def _asyncio_rps(port: int, seconds: float, conns: int) -> tuple[float, int]:
    loop = asyncio.get_running_loop()
    request = b"GET /rps?delay=0 HTTP/1.1\r\nHost: localhost\r\n\r\n"
    done = 0
    deadline = loop.time() + seconds

    async def client() -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection(HOST, port)
        while loop.time() < deadline:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = _LENGTH.search(head)
            if not head.startswith(b"HTTP/1.1 200") or length is None:
                raise HarnessError(f"bad answer from port {port}: {head[:80]!r}")
            await reader.readexactly(int(length.group(1)))
            done += 1
        writer.close()

    start = loop.time()
    clients = asyncio.gather(*(client() for _ in range(conns)))
    await asyncio.wait_for(clients, seconds + 60)
    return done / (loop.time() - start), done


def source_address(i: int) -> str:
    """The C{i}th of 250**3 loopback source addresses (127.1.1.1, 127.1.1.2,
    ...), so that no one address runs out of ephemeral ports.
    """
    return f"127.{i // 62_500 % 250 + 1}.{i // 250 % 250 + 1}.{i % 250 + 1}"


def open_requests(
    port: int,
    n: int,
    path_for: Callable[[], str],
    what: str,
    batch: int,
    ahead: int,
    spread: bool = False,
) -> list[socket.socket]:
    """N connections with one GET each (path from C{path_for()} just before it
    is sent), paced so that at most C{ahead} requests are not yet pending at
    the server after each C{batch}; the sockets, each set to close with a RST.
    With C{spread}, each from its own loopback address (L{source_address}).
    """
    base = get_stats(port)["pending"]
    socks: list[socket.socket] = []
    try:
        for i in range(1, n + 1):
            s = socket.socket()
            socks.append(s)
            s.settimeout(10.0)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RST)
            if spread:
                s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                s.bind((source_address(i), 0))
            s.connect((HOST, port))
            s.sendall(f"GET {path_for()} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            if i % batch == 0 and i > ahead:
                wait_until(port, "pending", base + i - ahead, 60.0, what)
        wait_until(port, "pending", base + n, 60.0, what)
    except OSError as e:
        close_all(socks)
        raise HarnessError(f"{what}: connection {len(socks)} of {n}: {e}") from e
    except BaseException:
        close_all(socks)
        raise
    return socks


def close_all(socks: list[socket.socket]) -> None:
    for s in socks:
        s.close()  # SO_LINGER 0 was set: a RST each


def hold(port: int, n: int, spread: bool = False) -> list[socket.socket]:
    """N requests held pending (delay one hour), all counted by the server."""
    path = "/held?delay=3600"
    return open_requests(port, n, lambda: path, "hold", 500, 1000, spread)


def abort_storm(port: int, socks: list[socket.socket], timeout: float) -> float:
    """Reset every held connection; seconds until /stats counts them all as
    interrupted.
    """
    target = get_stats(port)["interrupted"] + len(socks)
    start = time.monotonic()
    close_all(socks)
    return wait_until(port, "interrupted", target, timeout, "abort storm") - start


def lateness(port: int, m: int, timeout: float, spread: bool = False) -> list[float]:
    """M requests whose delays all end at one absolute instant; for each, the
    seconds from that instant to the client's receipt of the whole answer.
    """
    due = time.monotonic() + 1.0 + m * 0.001

    def path() -> str:
        return f"/due?delay={max(0.0, due - time.monotonic()):.6f}"

    # Small batches: a request waits little between send and the server's timer.
    socks = open_requests(port, m, path, "lateness", 25, 0, spread)
    if time.monotonic() > due:
        close_all(socks)
        raise HarnessError(f"lateness: {m} requests not all pending before due")
    late: list[float] = []
    buffers: dict[int, bytes] = {}
    open_fds = {s.fileno(): s for s in socks}
    poller = select.epoll()
    for s in socks:
        s.setblocking(False)
        poller.register(s.fileno(), select.EPOLLIN)
    try:
        while open_fds and time.monotonic() < due + timeout:
            events = poller.poll(0.1)
            now = time.monotonic()  # the data came in at or before this
            for fd, _ in events:
                data = open_fds[fd].recv(65536)
                buffers[fd] = buffer = buffers.get(fd, b"") + data
                head, sep, body = buffer.partition(b"\r\n\r\n")
                length = _LENGTH.search(head)
                if data and not (sep and length and len(body) >= int(length[1])):
                    continue
                poller.unregister(fd)
                del open_fds[fd]
                if not head.startswith(b"HTTP/1.1 200"):
                    raise HarnessError(f"lateness: bad answer {head[:80]!r}")
                late.append(now - due)
    finally:
        poller.close()
        close_all(socks)
    if open_fds:
        raise HarnessError(f"lateness: {len(open_fds)} of {m} answers never came")
    return late


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]
