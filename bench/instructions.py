"""python -m bench.instructions [--requests N] [--storm M] [--peers a,b]

CPU cost counted, not timed: each Python peer runs under valgrind's
callgrind, which counts the instructions it executes (user space).  The
count repeats to a fraction of a percent whatever else the machine is doing,
where requests/s on a shared VM wanders by tens of percent, so it is how a
change's cost is told apart from noise.

Two figures per peer, counting only while the load runs (callgrind_control
zeroes the counters before and dumps them after):

  - instructions per delay-0 request: N requests, 100 per keep-alive
    connection, one at a time;
  - instructions per interruption: M requests held pending, then every
    connection reset (SO_LINGER 0), until C{/stats} counts them all.

Needs valgrind (C{apt-get install valgrind}); a peer runs about 50 times
slower under it, so the sizes are small.  closedemo logs at most 50
interruption lines a second of wall time: a storm that lasts 50 times longer
logs more of its interruptions than the real one, so its per-interruption
figure here is an upper bound: the lines it logged during the storm are
printed beside it (a real storm of 10,000 resets over half a second logs 51).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import _load as load
from ._peers import HOST, HarnessError, Peer, command, free_port, get_stats

PEERS = ("bare_twisted", "closedemo")


def _request(s: socket.socket) -> None:
    s.sendall(b"GET /?delay=0 HTTP/1.1\r\nHost: localhost\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            raise HarnessError("connection closed before the answer")
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        length = re.search(rb"(?i)content-length:\s*(\d+)", head)
        if sep and length and len(body) >= int(length[1]):
            if not head.startswith(b"HTTP/1.1 200"):
                raise HarnessError(f"bad answer: {head[:60]!r}")
            return


def requests(port: int, n: int) -> None:
    """N delay-0 requests, 100 per keep-alive connection, one at a time."""
    for _ in range(max(1, n // 100)):
        with socket.create_connection((HOST, port), timeout=60) as s:
            for _ in range(min(n, 100)):
                _request(s)


def _interruption_lines(log: Path) -> int:
    """Lines logged for interruptions so far (closedemo's log; 0 if none)."""
    if not log.exists():
        return 0
    text = log.read_text(errors="replace")
    return text.count("Connection interrupted:") + text.count("more interruptions")


def _descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _callgrind(pid: int, action: str) -> None:
    subprocess.run(["callgrind_control", action, str(pid)], capture_output=True)


def _total(dumps: Path, pid: int) -> int:
    """The instructions counted in the last dump of process C{pid}."""
    # callgrind_control -d writes cg.PID.1, cg.PID.2, ...: the last is wanted.
    files = sorted(dumps.glob(f"cg.{pid}.*"), key=lambda p: int(p.suffix[1:]))
    for line in files[-1].read_text().splitlines() if files else ():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise HarnessError(f"no callgrind dump for pid {pid} in {dumps}")


def measure(name: str, n: int, m: int, workdir: Path) -> dict[str, float]:
    """Instructions per request and per interruption of peer C{name}."""
    port = free_port()
    argv = command(name, port, workdir)
    if isinstance(argv, str):
        raise HarnessError(f"{name}: {argv}")
    if "python" not in Path(argv[0]).name:
        argv = [sys.executable, *argv]  # twistd is a script: valgrind the interpreter
    dumps = workdir / name
    dumps.mkdir()
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={dumps}/cg.%p"]
    peer = Peer(name, [*valgrind, *argv], port, workdir / f"{name}.out")
    peer.start()
    try:
        peer.wait_ready(timeout=300.0)
        requests(port, 200)  # warm up: imports, caches, the first connections
        _callgrind(peer.pid, "-z")
        requests(port, n)
        _callgrind(peer.pid, "-d")
        per_request = _total(dumps, peer.pid) / n
        socks = load.open_requests(
            port, m, lambda: "/held?delay=3600", "hold", 100, 200
        )
        target = get_stats(port)["interrupted"] + m
        time.sleep(1.0)
        held = _descriptors(peer.pid)
        logged = _interruption_lines(workdir / f"{name}.log")
        _callgrind(peer.pid, "-z")
        load.close_all(socks)
        # Waited for by the peer's descriptors, not by asking /stats: its
        # answers would be counted too, more of them the longer it takes.
        deadline = time.monotonic() + 600
        while _descriptors(peer.pid) > held - m:
            if time.monotonic() > deadline:
                raise HarnessError(f"{name}: the storm's sockets were never closed")
            time.sleep(0.1)
        _callgrind(peer.pid, "-d")
        per_interruption = _total(dumps, peer.pid) / m
        logged = _interruption_lines(workdir / f"{name}.log") - logged
        if get_stats(port)["interrupted"] < target:
            raise HarnessError(f"{name}: not every reset was counted as interrupted")
    finally:
        peer.stop()
    return {
        "per_request": per_request,
        "per_interruption": per_interruption,
        "lines_logged_in_storm": logged,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.instructions", description=__doc__
    )
    p.add_argument("--requests", type=int, default=1000, help="N delay-0 requests")
    p.add_argument("--storm", type=int, default=2000, help="M connections reset")
    p.add_argument("--peers", default=",".join(PEERS), help="comma list")
    p.add_argument("--json", type=Path, help="write the results here too")
    args = p.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    names = [n for n in args.peers.split(",") if n]
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmp:
        for name in names:
            print(f"{name}: under callgrind ...", flush=True)
            results[name] = measure(name, args.requests, args.storm, Path(tmp))
    base = results.get("bare_twisted")
    head = ("peer", "instr/request", "ratio", "instr/interruption", "ratio")
    print("{:<14} {:>14} {:>6} {:>19} {:>6}".format(*head))
    for name, r in results.items():
        ratios = [
            f"{r[k] / base[k]:.3f}" if base else "-"
            for k in ("per_request", "per_interruption")
        ]
        print(
            f"{name:<14} {r['per_request']:>14,.0f} {ratios[0]:>6} "
            f"{r['per_interruption']:>19,.0f} {ratios[1]:>6}"
        )
    for name, r in results.items():
        if r["lines_logged_in_storm"]:
            print(f"{name} logged {r['lines_logged_in_storm']:,.0f} lines in the storm")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
