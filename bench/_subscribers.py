"""The subscribers scenario: what idle /outcomes subscribers cost each request.

One closedemo; CPU seconds per delay-0 request (utime + stime from
/proc/PID/stat over the load, divided by the requests /stats counts as
completed) without subscribers, then with N connected to /outcomes that read
nothing, alternately for a few rounds; the ratio of the medians.  Target:
40 subscribers add at most 50%.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

from . import _load as load
from ._peers import HOST, HarnessError, Peer, command, free_port, get_stats

TARGET = 1.5
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process C{pid} so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def subscribe(port: int, n: int) -> list[socket.socket]:
    """N connections to /outcomes, each sent its GET and never read."""
    socks = []
    try:
        for _ in range(n):
            s = socket.create_connection((HOST, port), timeout=10)
            socks.append(s)
            s.sendall(b"GET /outcomes HTTP/1.1\r\nHost: localhost\r\n\r\n")
    except OSError as e:
        for s in socks:
            s.close()
        raise HarnessError(f"subscribers: connection {len(socks)} of {n}: {e}") from e
    return socks


def cpu_per_request(
    peer: Peer, seconds: float, conns: int, tool: str
) -> tuple[float, float]:
    """Microseconds of CPU per completed request under the req/s load, and
    the requests/s."""
    done = get_stats(peer.port)["completed"]
    cpu = cpu_seconds(peer.pid)
    rps = load.requests_per_second(peer.port, seconds, conns, tool)
    used = cpu_seconds(peer.pid) - cpu
    requests = get_stats(peer.port)["completed"] - done
    if requests <= 0:
        raise HarnessError("subscribers: no request completed under load")
    return 1e6 * used / requests, rps


def run(args: Any, tool: str, workdir: Path, say: Any) -> dict[str, Any]:
    port = free_port()
    argv = command("closedemo", port, workdir)
    assert isinstance(argv, list)
    peer = Peer("closedemo", argv, port, workdir / "closedemo.out")
    peer.start()
    try:
        peer.wait_ready()
        say(f"closedemo: ready on port {port} (pid {peer.pid}); warm-up")
        load.requests_per_second(port, 1.0, args.conns, tool)
        rows: dict[str, list[float]] = {"without": [], "with": [], "rps_without": []}
        rows["rps_with"] = []
        for r in range(args.rounds):
            say(f"round {r + 1}/{args.rounds}: no subscribers, {args.duration:g} s")
            us, rps = cpu_per_request(peer, args.duration, args.conns, tool)
            rows["without"].append(us)
            rows["rps_without"].append(rps)
            socks = subscribe(port, args.subscribers)
            try:
                time.sleep(0.5)  # let every stream begin
                say(f"round {r + 1}/{args.rounds}: {args.subscribers} idle subscribers")
                us, rps = cpu_per_request(peer, args.duration, args.conns, tool)
                rows["with"].append(us)
                rows["rps_with"].append(rps)
            finally:
                for s in socks:
                    s.close()
            time.sleep(0.5)
    except HarnessError:
        print(f"--- closedemo output ---\n{peer.tail()}")
        raise
    finally:
        peer.stop()

    def median(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    without, with_ = median(rows["without"]), median(rows["with"])
    ratio = with_ / without
    return {
        "subscribers": args.subscribers,
        "cpu_us_per_request_without": without,
        "cpu_us_per_request_with": with_,
        "requests_per_s_without": median(rows["rps_without"]),
        "requests_per_s_with": median(rows["rps_with"]),
        "ratio": ratio,
        "target": TARGET,
        "pass": ratio <= TARGET,
        "rounds": rows,
    }


def report(result: dict[str, Any]) -> None:
    verdict = "PASS" if result["pass"] else "FAIL"
    print(
        f"\nCPU per request at delay 0: {result['cpu_us_per_request_without']:.1f} us "
        f"without subscribers, {result['cpu_us_per_request_with']:.1f} us with "
        f"{result['subscribers']} idle /outcomes subscribers "
        f"({result['requests_per_s_without']:,.0f} and "
        f"{result['requests_per_s_with']:,.0f} requests/s)\n"
        f"  {verdict} {result['ratio']:.2f}x (target <= {result['target']:g}x)"
    )
