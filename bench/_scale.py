"""
C{python -m bench --scale}: how each peer's cost grows with the work.  For
each N of a ladder, up to what the descriptor limit allows, each peer is
started afresh and measured from outside: memory per held request, the time
to accept N, a C{/stats} answer while N are held, the abort storm's wall and
CPU time per request, and the lateness of N/2 answers due at once.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import _load as load
from ._peers import HarnessError, Peer, command, free_port, get_stats, raise_nofile
from ._readme import write_between

PEERS = ("closedemo", "bare_twisted", "node")
LADDER = (1000, 2000, 4000, 8000, 16_000, 32_000, 64_000)
QUICK_LADDER = (200, 800)
# Descriptors a process keeps beside its N sockets: the harness's own files
# and its /stats connection; a peer's listening socket, epoll, log, pipes
# (Node's libuv opens a few dozen).
RESERVE = 500

# key, label, format
FIGURES = [
    ("kib_per_held", "KiB per held request", "{:.2f}"),
    ("accept_ms", "accept N, ms", "{:,.0f}"),
    ("stats_ms", "/stats answer while held, ms", "{:.2f}"),
    ("storm_wall_us", "storm wall time per request, us", "{:.1f}"),
    ("storm_cpu_us", "storm CPU per request, us", "{:.1f}"),
    ("lateness_p50_ms", "lateness of N/2 due, p50 ms", "{:.1f}"),
    ("lateness_p99_ms", "lateness of N/2 due, p99 ms", "{:.1f}"),
]


def descriptor_limit(reserve: int = RESERVE) -> dict[str, Any]:
    """
    The largest N this machine lets the harness hold: the harness (the
    client) and the peer are separate processes, each with its own
    C{RLIMIT_NOFILE}, each holding N sockets; the system's file table holds
    both sides' (2N).
    """
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    per_process = (
        hard - reserve if hard != resource.RLIM_INFINITY else 1 << 30
    )  # fmt: skip
    used, _, most = (int(f) for f in Path("/proc/sys/fs/file-nr").read_text().split())
    system = (most - used) // 2 - reserve
    if per_process <= system:
        why = (
            f"the descriptor hard limit (ulimit -Hn) is {hard:,} per process and "
            f"each side holds N sockets beside {reserve} of its own"
        )
    else:
        why = (
            f"the system's file table has room for {most - used:,} more files, "
            f"and both sides' N sockets count"
        )
    return {
        "nofile_hard": hard,
        "reserve": reserve,
        "max_n": max(0, min(per_process, system)),
        "why": why,
    }


def sizes(ladder: tuple[int, ...], limit: int) -> tuple[list[int], str]:
    """
    The N to measure: the ladder's steps below the limit, then the limit
    itself where the ladder goes past it; and why it stopped there.
    """
    found = [n for n in ladder if n <= limit]
    if found and found[-1] == ladder[-1]:
        return found, "end of the ladder"
    if limit > 0 and limit not in found:
        found.append(limit)
    return found, "descriptor limit"


def measure_one(peer: Peer, n: int, storms: int) -> dict[str, Any]:
    """The figures of one fresh peer at N; C{storms} holds and storms of N."""
    port = peer.port
    load.abort_storm(port, load.hold(port, min(n, 200), spread=True), 60.0)
    time.sleep(0.3)
    idle = peer.rss_kib()
    start = time.monotonic()
    socks = load.hold(port, n, spread=True)
    accept = time.monotonic() - start
    time.sleep(0.5)
    held = peer.rss_kib()
    answers = []
    for _ in range(9):
        start = time.monotonic()
        get_stats(port)
        answers.append(time.monotonic() - start)
    walls, cpus = [], []
    for i in range(storms):
        if i:
            socks = load.hold(port, n, spread=True)
            time.sleep(0.5)
        before = peer.cpu_seconds()
        walls.append(load.abort_storm(port, socks, 120.0) / n)
        cpus.append((peer.cpu_seconds() - before) / n)
    late = load.lateness(port, max(1, n // 2), 120.0, spread=True)
    return {
        "n": n,
        "rss_idle_kib": idle,
        "rss_held_kib": held,
        "kib_per_held": (held - idle) / n,
        "accept_ms": 1000 * accept,
        "stats_ms": 1000 * statistics.median(answers),
        "storm_wall_us": 1e6 * statistics.median(walls),
        "storm_cpu_us": 1e6 * statistics.median(cpus),
        "storms_wall_us": [1e6 * w for w in walls],
        "storms_cpu_us": [1e6 * c for c in cpus],
        "due": max(1, n // 2),
        "lateness_p50_ms": 1000 * load.percentile(late, 50),
        "lateness_p99_ms": 1000 * load.percentile(late, 99),
    }


def run(
    args: argparse.Namespace, workdir: Path, say: Callable[[str], None]
) -> dict[str, Any]:
    """Each peer at each N, a fresh process each time."""
    # This process and the peers it starts (they inherit it) may open up
    # to the hard limit.
    raise_nofile(resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    limit = descriptor_limit()
    ladder = QUICK_LADDER if args.quick else LADDER
    found, stopped = sizes(ladder, limit["max_n"])
    limit["stopped_by"] = stopped
    say(
        f"scale: N = {', '.join(f'{n:,}' for n in found)}; stops at "
        f"{found[-1] if found else 0:,}: {stopped}"
        + (f" ({limit['why']})" if stopped == "descriptor limit" else "")
    )
    data: dict[str, Any] = {"limit": limit, "sizes": found, "peers": {}}
    data["skipped"] = {}
    data["storms_at_largest"] = args.storms
    for name in args.peers:
        rows: list[dict[str, Any]] = []
        for n in found:
            port = free_port()
            argv = command(name, port, workdir)
            if isinstance(argv, str):
                say(f"{name}: SKIPPED: {argv}")
                data["skipped"][name] = argv
                break
            out = workdir / f"{name}-{n}.out"
            peer = Peer(name, argv, port, out, args.server_cpus)
            storms = args.storms if n == found[-1] else 1
            say(f"{name} at N = {n:,}: a fresh process; {storms} storm(s)")
            try:
                peer.start()
                peer.wait_ready()
                rows.append(measure_one(peer, n, storms))
            except HarnessError:
                print(f"--- {name} output ---\n{peer.tail()}")
                raise
            finally:
                peer.stop()
        if rows:
            data["peers"][name] = rows
    return data


def report(data: dict[str, Any]) -> None:
    names = list(data["peers"])
    print(f"\n{'figure':34}{'N':>8}" + "".join(f"{n:>16}" for n in names))
    for key, label, fmt in FIGURES:
        for i, n in enumerate(data["sizes"]):
            row = f"{label if i == 0 else '':34}{n:>8,}"
            for name in names:
                rows = data["peers"][name]
                row += f"{fmt.format(rows[i][key]) if i < len(rows) else '-':>16}"
            print(row)
        row = f"{'  largest N / first N':34}{'':>8}"
        for name in names:
            rows = data["peers"][name]
            first, last = rows[0][key], rows[-1][key]
            row += f"{f'{last / first:.2f}x' if first else '-':>16}"
        print(row)
    largest = data["sizes"][-1] if data["sizes"] else 0
    for name in names:
        cpu = data["peers"][name][-1]["storms_cpu_us"]
        cells = ", ".join(f"{c:.1f}" for c in cpu)
        print(
            f"{name}: storm CPU per request at N = {largest:,}, each storm: {cells} us"
        )
    limit = data["limit"]
    print(
        f"\nN stopped at {largest:,}: {limit['stopped_by']}"
        + (f" ({limit['why']})" if limit["stopped_by"] == "descriptor limit" else "")
    )
    for name, why in data["skipped"].items():
        print(f"  note: {name} skipped: {why}")


def write_chart(data: dict[str, Any], path: Path) -> Path | None:
    """Each figure against N (log scale), a line per peer; L{None} without
    matplotlib.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    if not data["peers"]:
        return None
    shown = [f for f in FIGURES if f[0] != "lateness_p50_ms"]
    fig, axes = plt.subplots(2, 3, figsize=(12, 7))
    for ax, (key, label, _) in zip(axes.flat, shown, strict=True):
        for name, rows in data["peers"].items():
            ax.plot([r["n"] for r in rows], [r[key] for r in rows], "o-", label=name)
        ax.set_xscale("log")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("N held (log scale)", fontsize=8)
        ax.set_ylim(bottom=0)
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(fontsize=8)
    commit = data.get("machine", {}).get("closedemo_commit", "")
    fig.suptitle(
        f"python -m bench --scale{' at ' + commit if commit else ''}: N up to "
        f"{data['sizes'][-1]:,} ({data['limit']['stopped_by']})",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


START = (
    "<!-- scale table: python -m bench --scale --update-docs writes it "
    "from bench/scale.json -->"
)
END = "<!-- /scale table -->"
NAMES = {"closedemo": "closedemo", "bare_twisted": "bare Twisted", "node": "Node"}


def table(data: dict[str, Any]) -> str:
    """The Markdown of a scale run: a line naming it and where N stopped,
    then each figure at each N for each peer.
    """
    m, names = data["machine"], list(data["peers"])
    limit = data["limit"]
    largest = data["sizes"][-1]
    lines = [
        f"One `python -m bench --scale` run at commit `{m['closedemo_commit']}` "
        f"(`bench/scale.json`): {m['cores']}-core {m['cpu']}, Python "
        f"{m['python']}, Twisted {m['twisted']}, Node {m['node']}. N stopped at "
        f"{largest:,}: {limit['stopped_by']}"
        + (f" ({limit['why']})" if limit["stopped_by"] == "descriptor limit" else "")
        + ".",
        "",
        "| figure | N | " + " | ".join(NAMES.get(n, n) for n in names) + " |",
        "| --- | --- |" + " --- |" * len(names),
    ]
    for key, label, fmt in FIGURES:
        for i, n in enumerate(data["sizes"]):
            cells = [
                fmt.format(rows[i][key]) if i < len(rows) else "\N{EN DASH}"
                for rows in (data["peers"][name] for name in names)
            ]
            lines.append(
                f"| {label if i == 0 else ''} | {n:,} | " + " | ".join(cells) + " |"
            )
    lines.append("")
    for name in names:
        cpu = ", ".join(f"{c:.1f}" for c in data["peers"][name][-1]["storms_cpu_us"])
        lines.append(
            f"{NAMES.get(name, name)}, storm CPU per request at N = {largest:,}, "
            f"storm by storm: {cpu} us."
        )
    return "\n".join(lines) + "\n"


def update(readme: Path, data: dict[str, Any]) -> None:
    """Put the table of C{data} between the scale markers in C{readme}."""
    write_between(readme, START, END, lambda: table(data))
