"""python -m bench [--quick] [--held N] [--due M] [--cycles C] [--peers a,b]
python -m bench --scenario subscribers [--subscribers N] [--duration S]
python -m bench --scale [--quick] [--storms K] [--peers a,b]

Start the peers, measure each with the same load, print a table with ratios
against bare Twisted (requests/s and abort storms paired: each peer's slice
beside the baseline's, the median of the per-pair ratios with its spread)
and the closedemo targets, and write JSON: into
bench/out/ (ignored), to --json PATH, or with --update-docs into the tracked
bench/results.json.  The subscribers scenario, run alone, measures what idle
/outcomes subscribers add to closedemo's CPU per request.  --scale measures
closedemo, bare Twisted and Node at N held requests from 1,000 up to what
the descriptor limit allows, each a fresh process per N.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from . import _load as load
from . import _paired, _peers, _readme, _scale, _subscribers
from ._chart import write_chart
from ._peers import (
    BASELINE,
    HERE,
    PEER_NAMES,
    HarnessError,
    Peer,
    get_stats,
    single_process,
)

FIGURES = [  # key, label, format
    ("requests_per_s", "requests/s at delay 0", "{:,.0f}"),
    ("requests_per_cpu_s", "requests per CPU-second", "{:,.0f}"),
    ("kib_per_held", "KiB per held request", "{:.2f}"),
    ("abort_ms", "abort -> all reported, ms", "{:,.0f}"),
    ("abort_cpu_ms", "abort, the peer's CPU ms", "{:,.0f}"),
    ("lateness_p50_ms", "lateness p50, ms", "{:.1f}"),
    ("lateness_p99_ms", "lateness p99, ms", "{:.1f}"),
]
# Issue 23's targets: peer, figure, limit, and the peer its ratio is to.
# Requests/s and the abort storm are medians of paired ratios (with a 95%
# interval); the workers' requests/s is closedemo_workers' slice over
# bare_twisted_workers' slice of the same cycle; the rest are quotients.
WORKERS_BASELINE = "bare_twisted_workers"
TARGETS = [
    ("closedemo", "requests_per_s", 0.95, BASELINE),
    ("closedemo", "requests_per_cpu_s", 0.95, BASELINE),
    ("closedemo", "kib_per_held", 1.05, BASELINE),
    ("closedemo", "abort_cpu_ms", 1.05, BASELINE),
    ("closedemo", "lateness_p99_ms", 1.05, BASELINE),
    ("closedemo_workers", "requests_per_s", 0.95, WORKERS_BASELINE),
    ("closedemo_workers", "requests_per_cpu_s", 0.95, WORKERS_BASELINE),
    ("closedemo_workers", "lateness_p99_ms", 0.75, BASELINE),
]
HIGHER_IS_BETTER = ("requests_per_s", "requests_per_cpu_s")
# duration and rounds of the subscribers scenario; rounds of the storms here
QUICK = {"held": 1000, "due": 500, "duration": 2.0, "rounds": 1, "cycles": 2}
FULL = {"held": 10_000, "due": 5000, "duration": 10.0, "rounds": 3, "cycles": 30}
PAIRED = ("requests_per_s", "requests_per_cpu_s", "abort_ms", "abort_cpu_ms")
# closedemo's slices and storms, the ones the targets are about, come this
# many times a cycle and a round: a narrower interval for it.
FOCUS, FOCUS_WEIGHT = "closedemo", 3
SERVER_CPUS, LOAD_CPUS = {0}, {1}  # --pin: single-process peers, and wrk
T0 = time.monotonic()
TRACKED = HERE / "results.json"  # the run the READMEs cite: --update-docs only
OUTPUT = HERE / "out" / "results.json"  # ignored by git
README = HERE.parent / "docs" / "benchmarks.md"  # its table: --update-docs


def say(message: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f} s] {message}", flush=True)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small sizes, < 1 minute")
    p.add_argument("--held", type=int, help="N held requests (default 10000)")
    p.add_argument("--due", type=int, help="M answers due at once (default 5000)")
    p.add_argument(
        "--cycles",
        type=int,
        help="req/s: slices of each peer, each between two of bare_twisted's (30)",
    )
    p.add_argument("--slice", type=float, default=1.0, help="seconds per slice (1)")
    p.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="single-process peers on CPU 0, wrk for them on CPU 1 (default on)",
    )
    p.add_argument("--rounds", type=int, help="memory, abort, lateness rounds (3)")
    p.add_argument("--duration", type=float, help="subscribers: seconds per round (10)")
    p.add_argument("--conns", type=int, default=50, help="req/s connections")
    p.add_argument(
        "--peers",
        help=f"comma list (default: all; with --scale {','.join(_scale.PEERS)})",
    )
    p.add_argument(
        "--scale",
        action="store_true",
        help="cost against N held, N from 1,000 up to the descriptor limit "
        "(--quick: 200 and 800)",
    )
    p.add_argument(
        "--storms",
        type=int,
        help="--scale: storms in a row at the largest N (5; 2 with --quick)",
    )
    p.add_argument("--load", choices=("auto", "wrk", "asyncio"), default="auto")
    p.add_argument(
        "--scenario",
        choices=("peers", "subscribers"),
        default="peers",
        help="peers: the table (default); subscribers: CPU per request with "
        "idle /outcomes subscribers, closedemo alone",
    )
    p.add_argument("--subscribers", type=int, default=40, help="idle subscribers")
    p.add_argument(
        "--json",
        type=Path,
        help=f"write the results here (default {OUTPUT.relative_to(HERE.parent)}, "
        "not tracked)",
    )
    p.add_argument(
        "--update-docs",
        action="store_true",
        help=f"write {TRACKED.relative_to(HERE.parent)}, the run the READMEs cite",
    )
    p.add_argument("--profile", type=Path, metavar="DIR", help="then py-spy them")
    args = p.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.json is not None and args.update_docs:
        p.error("--json and --update-docs both say where to write: give one")
    if args.json is None:
        args.json = TRACKED if args.update_docs else OUTPUT
        if args.scenario == "subscribers":
            args.json = args.json.with_name("subscribers.json")
        if args.scale:
            args.json = args.json.with_name("scale.json")
    if args.peers is None:
        args.peers = ",".join(_scale.PEERS if args.scale else PEER_NAMES)
    if args.storms is None:
        args.storms = 2 if args.quick else 5
    if args.storms < 1:
        p.error("--storms must be positive")
    args.peers = [n.strip() for n in args.peers.split(",") if n.strip()]
    if args.cycles < 1 or args.slice <= 0 or args.rounds < 1:
        p.error("--cycles, --slice and --rounds must be positive")
    allowed = os.sched_getaffinity(0)
    pin = args.pin and SERVER_CPUS | LOAD_CPUS <= allowed
    args.server_cpus, args.load_cpus = (SERVER_CPUS, LOAD_CPUS) if pin else (None, None)
    args.all_cpus = allowed if pin else None  # the workers peers, and wrk for them
    if unknown := set(args.peers) - set(PEER_NAMES):
        p.error(f"unknown peers {sorted(unknown)}; choose from {PEER_NAMES}")
    return args


def measure(peers: list[Peer], args: argparse.Namespace, tool: str) -> dict[str, Any]:
    runs: dict[str, dict[str, list[float]]] = {p.name: {} for p in peers}
    data: dict[str, Any] = {"peers": {}, "paired": {}}

    def add(peer: Peer, key: str, value: float) -> None:
        runs[peer.name].setdefault(key, []).append(value)

    base = next((p for p in peers if p.name == BASELINE), None)
    others = [p for p in peers if p is not base]
    for peer in peers:
        say(f"{peer.name}: warm-up (200 held and aborted, 50 due)")
        load.abort_storm(peer.port, load.hold(peer.port, 200), 60.0)
        load.lateness(peer.port, 50, 30.0)
    aborts: dict[str, dict[str, list[float]]] = {"abort_ms": {}, "abort_cpu_ms": {}}
    for r in range(args.rounds):
        visit = peers[r % len(peers) :] + peers[: r % len(peers)]
        tag = f"round {r + 1}/{args.rounds}"
        storms = [p for p in visit if p is not base] or visit
        # closedemo, whose target is the one to judge, storms FOCUS_WEIGHT times.
        storms = [
            q for p in storms for q in [p] * (FOCUS_WEIGHT if p.name == FOCUS else 1)
        ]
        for peer in storms:
            # Each storm right after one of the baseline's (or before: the
            # order swaps every round), seconds apart, not a minute.
            pair = [] if base in (None, peer) else [base]
            pair = [peer, *pair] if r % 2 else [*pair, peer]
            ms, cpu = {}, {}
            for p in pair:
                say(f"{tag} {p.name}: memory with {args.held:,} held requests")
                time.sleep(0.3)
                idle = p.rss_kib()
                socks = load.hold(p.port, args.held)
                time.sleep(0.5)
                held = p.rss_kib()
                add(p, "rss_idle_kib", idle)
                add(p, "rss_held_kib", held)
                add(p, "kib_per_held", (held - idle) / args.held)
                say(f"{tag} {p.name}: abort {args.held:,} (RST) until all reported")
                before = p.cpu_seconds()
                ms[p.name] = 1000 * load.abort_storm(p.port, socks, 120)
                cpu[p.name] = 1000 * (p.cpu_seconds() - before)
                add(p, "abort_ms", ms[p.name])
                add(p, "abort_cpu_ms", cpu[p.name])
            if base is not None and base is not peer:
                for key, storm in (("abort_ms", ms), ("abort_cpu_ms", cpu)):
                    ratio = storm[peer.name] / storm[base.name]
                    aborts[key].setdefault(peer.name, []).append(ratio)
        for peer in visit:
            say(f"{tag} {peer.name}: lateness of {args.due:,} answers due at once")
            late = load.lateness(peer.port, args.due, 60.0)
            add(peer, "lateness_p50_ms", 1000 * load.percentile(late, 50))
            add(peer, "lateness_p99_ms", 1000 * load.percentile(late, 99))
            add(peer, "lateness_max_ms", 1000 * max(late))
    for key, pairs in aborts.items():
        if base is not None:
            data["paired"][key] = {
                n: _paired.spread(v) | {"ratios": v} for n, v in pairs.items()
            }
    # Without the baseline, the first peer stands in for it (no ratios kept).
    first = (base or others[0]).name
    names = [p.name for p in peers if p.name != first]
    order = _paired.cycle_order(names, FOCUS, FOCUS_WEIGHT, WORKERS_BASELINE)
    by_name = {p.name: p for p in peers}
    total = 1 + max(1, 2 * len(order)) * args.cycles
    per_cpu: _paired.Measured = []  # requests per CPU-second, each slice

    def rps(name: str) -> float:
        say(
            f"requests/s slice {len(per_cpu) + 1}/{total}: {name} for "
            f"{args.slice:g} s ({tool})"
        )
        peer = by_name[name]
        cpus = args.load_cpus if single_process(name) else args.all_cpus
        before = peer.cpu_seconds()
        rate, answered = load.load_slice(peer.port, args.slice, args.conns, tool, cpus)
        used = peer.cpu_seconds() - before
        per_cpu.append((name, answered / used if used > 0 else 0.0))
        return rate

    if order:
        measured = _paired.run(first, order, args.cycles, rps)
    else:  # one peer alone
        measured = [(first, rps(first)) for _ in range(total)]
    for key, found in (("requests_per_s", measured), ("requests_per_cpu_s", per_cpu)):
        for name, values in _paired.by_peer(found).items():
            runs[name][key] = values
        if base is not None:
            data["paired"][key] = {
                n: _paired.spread(v) | {"ratios": v}
                for n, v in _paired.ratios(first, found).items()
            }
    data["paired"]["workers_vs_node"] = {
        n: _paired.spread(q) | {"quotients": q}
        for n in order
        if n.endswith("_workers") and (q := _paired.quotients(measured, n, "node"))
    }
    # closedemo_workers over bare_twisted_workers, the slice of the same cycle.
    data["paired"]["workers_vs_bare"] = {
        key: _paired.spread(q) | {"quotients": q}
        for key, found in (
            ("requests_per_s", measured),
            ("requests_per_cpu_s", per_cpu),
        )
        if (q := _paired.quotients(found, "closedemo_workers", WORKERS_BASELINE))
    }
    data["paired"] |= {"slice_s": args.slice, "cycles": args.cycles, "order": order}

    # Memory from the first hold (a fresh process); the rest as medians.
    def kept(k: str, v: list[float]) -> float:
        return v[0] if "kib" in k else _paired.quantile(v, 0.5)

    data["peers"] = {
        n: {k: kept(k, v) for k, v in f.items()} | {"rounds": f}
        for n, f in runs.items()
    }
    return data


def profile(peers: list[Peer], args: argparse.Namespace, tool: str) -> None:
    """py-spy (raw collapsed stacks, 1 kHz, whole stacks) each Python peer under
    three abort storms and one req/s run; print the top functions by own time.
    """
    args.profile.mkdir(parents=True, exist_ok=True)
    for peer in (p for p in peers if p.name != "node"):
        storms = [args.profile / f"{peer.name}-abort-{i}.txt" for i in (1, 2, 3)]
        for out in storms:
            socks = load.hold(peer.port, args.held)
            _spy(peer, out, partial(load.abort_storm, peer.port, socks, 120.0))
        print(f"{peer.name}, 3 abort storms, own time:\n{top_functions(storms)}")
        rps = args.profile / f"{peer.name}-rps.txt"
        spec = (peer.port, args.duration, args.conns, tool)
        _spy(peer, rps, partial(load.requests_per_second, *spec))
        print(f"{peer.name}, requests/s load, own time:\n{top_functions([rps])}")


def _spy(peer: Peer, out: Path, action: Callable[[], object]) -> None:
    say(f"profile {peer.name} -> {out}")
    spy = subprocess.Popen(
        [_peers.tool("py-spy"), "record", "--pid", str(peer.pid), "--rate", "1000",
         "--format", "raw", "-o", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(1.5)  # let it attach
    action()
    spy.send_signal(signal.SIGINT)
    if spy.wait(60) != 0 or not out.exists():
        raise HarnessError(f"py-spy on {peer.name} failed (is py-spy installed?)")


def top_functions(raws: list[Path], count: int = 12) -> str:
    own: Counter[str] = Counter()
    for line in "\n".join(r.read_text() for r in raws).splitlines():
        stack, _, n = line.rpartition(" ")
        if n.isdigit():
            own[re.sub(r":\d+\)$", ")", stack.split(";")[-1])] += int(n)
    total = sum(own.values())
    top = own.most_common(count)
    return "\n".join(f"  {100 * n / total:5.1f}% {f}" for f, n in top)


def _interval(s: dict[str, Any]) -> str:
    return f"{s['median']:.3f}x, 95% CI {s['ci95'][0]:.3f}-{s['ci95'][1]:.3f}"


def report(data: dict[str, Any]) -> None:
    m, peers, paired = data["machine"], data["peers"], data["paired"]
    print(
        f"\nmachine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}, "
        f"loadavg {m['loadavg']}; Python {m['python']}, Twisted {m['twisted']}, "
        f"Node {m['node']}, aiohttp {m['aiohttp']}; load: {data['load_generator']}; "
        f"closedemo at {m['closedemo_commit']}"
    )
    s = data["sizes"]
    pin = data["pinning"]
    print(
        f"sizes: {s['held']:,} held, {s['due']:,} due at once, {s['rounds']} "
        f"round(s), memory from the first; req/s in {s['cycles']} cycles of "
        f"{s['slice']:g} s slices x {s['conns']} connections, each peer's slice "
        f"between two of {BASELINE}'s; "
        + (
            f"single-process peers on CPUs {pin['servers']}, wrk for them on "
            f"{pin['load']}"
            if pin
            else "not pinned"
        )
        + f"\n(x) = ratio to {BASELINE}: req/s and abort as the median of paired "
        "ratios, the rest as quotients of the figures\n"
    )
    names = list(peers)
    print(f"{'figure':30}" + "".join(f"{n:>22}" for n in names))
    for key, label, fmt in FIGURES:
        row = f"{label:30}"
        for name in names:
            ratio = data["ratios"].get(name, {}).get(key)
            cell = fmt.format(peers[name][key])
            row += f"{cell + (f' ({ratio:.2f}x)' if ratio is not None else ''):>22}"
        print(row)
        for what, lo, hi in (("IQR of pairs", "q1", "q3"), ("95% CI", "ci95", "")):
            found = paired.get(key, {})
            if not found or key not in PAIRED:
                continue
            row = f"{'  ratio, ' + what:30}"
            for name in names:
                f = found.get(name)
                cell = "" if f is None else (
                    f"{f[lo][0]:.3f}-{f[lo][1]:.3f}" if not hi
                    else f"{f[lo]:.3f}-{f[hi]:.3f}"
                )  # fmt: skip
                row += f"{cell:>22}"
            print(row)
    for name, q in paired.get("workers_vs_node", {}).items():
        print(f"{name} / node, req/s slice by slice: {_interval(q)} (n={q['n']})")
    for key, q in paired.get("workers_vs_bare", {}).items():
        print(
            f"closedemo_workers / {WORKERS_BASELINE}, {key} slice by slice: "
            f"{_interval(q)} (n={q['n']})"
        )
    if data["targets"]:
        print("\nclosedemo targets (issue 23; informational):")
    for t in data["targets"]:
        verdict = "PASS" if t["pass"] else "FAIL"
        op = ">=" if t["figure"].endswith(HIGHER_IS_BETTER) else "<="
        unit = f"x {t['reference']}"
        print(
            f"  {verdict} {t['peer']} {t['figure']}: {t['value']:.3f}{unit} "
            f"(target {op} {t['limit']:g}{unit}){t['miss']}{t['noise']}"
        )
    if data["peers"].get("closedemo") and BASELINE not in data["peers"]:
        print(f"  ratio targets not checked: {BASELINE} was not measured")
    for name, why in data["skipped"].items():
        print(f"  note: {name} skipped: {why}")
    for check in data["checks"]:
        print(f"  note: {check}")


def summarize(data: dict[str, Any]) -> None:
    peers, paired = data["peers"], data["paired"]
    base = peers.get(BASELINE)
    data["ratios"] = {
        n: {k: f[k] / base[k] for k, *_ in FIGURES if base[k]}
        for n, f in (peers.items() if base else ())
    }
    for key in PAIRED:  # the paired ratios, where taken
        for name, found in paired.get(key, {}).items():
            data["ratios"][name][key] = found["median"]
    data["targets"] = []
    for peer, key, limit, reference in TARGETS:
        if peer not in peers or reference not in peers:
            continue
        if reference == BASELINE:
            value = data["ratios"][peer].get(key)
            found = paired.get(key, {}).get(peer)
        else:  # slice by slice against the reference's slice of the cycle
            found = paired.get("workers_vs_bare", {}).get(key)
            value = None if found is None else found["median"]
        if value is not None:
            data["targets"].append(_target(key, limit, value, found))
            data["targets"][-1] |= {"peer": peer, "reference": reference}


def _target(
    key: str, limit: float, value: float, found: dict[str, Any] | None
) -> dict[str, Any]:
    """One target's verdict; where the value is a median of paired ratios,
    whether its 95% confidence interval holds the limit (too close to call).
    """
    ok = value >= limit if key.endswith(HIGHER_IS_BETTER) else value <= limit
    miss = "" if ok else f": misses by {abs(value / limit - 1):.1%}"
    noise = ""
    if found is not None:
        low, high = found["ci95"]
        noise = f"; 95% CI {low:.3f}-{high:.3f}"
        if low <= limit <= high:
            noise += ", which holds the limit: within the noise"
    target = {"figure": key, "limit": limit, "value": value}
    return target | {"pass": ok, "miss": miss, "noise": noise}


def run_subscribers(args: argparse.Namespace) -> int:
    tool = load.load_generator(args.load)
    data: dict[str, Any] = {"machine": _peers.versions(), "load_generator": tool}
    data["sizes"] = {k: getattr(args, k) for k in ("duration", "rounds", "conns")}
    say(f"subscribers scenario; load generator: {tool}; machine: {data['machine']}")
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        data["subscribers"] = _subscribers.run(args, tool, Path(tmp), say)
    _subscribers.report(data["subscribers"])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(data, indent=2) + "\n")
    print(f"\nJSON: {args.json}")
    return 0


def run_scale(args: argparse.Namespace) -> int:
    if args.load_cpus:
        os.sched_setaffinity(0, args.load_cpus)  # the client, apart from peers
    data: dict[str, Any] = {"machine": _peers.versions()}
    data["pinning"] = args.server_cpus and {
        "servers": sorted(args.server_cpus),
        "load": sorted(args.load_cpus),
    }
    say(f"scale; machine: {data['machine']}")
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        data |= _scale.run(args, Path(tmp), say)
    _scale.report(data)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(data, indent=2) + "\n")
    print(f"\nJSON: {args.json}")
    chart = _scale.write_chart(data, args.json.with_suffix(".png"))
    print(f"chart: {chart}" if chart else "no chart: pip install matplotlib")
    if args.update_docs:
        _scale.update(README, data)
        print(f"table: {README}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.scenario == "subscribers":
        return run_subscribers(args)
    if args.scale:
        return run_scale(args)
    tool = load.load_generator(args.load)
    _peers.raise_nofile(args.held + args.due + 1000)
    data: dict[str, Any] = {"machine": _peers.versions(), "skipped": {}, "checks": []}
    if tool == "wrk":
        version = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
        data["load_generator"] = " ".join(version.stdout.split()[:2])
    else:
        data["load_generator"] = "asyncio keep-alive generator (no wrk on PATH)"
    sizes = ("held", "due", "rounds", "cycles", "slice", "conns")
    data["sizes"] = {k: getattr(args, k) for k in sizes}
    data["pinning"] = args.server_cpus and {
        "servers": sorted(args.server_cpus),
        "load": sorted(args.load_cpus),
        "workers_peers": sorted(args.all_cpus),
    }
    if args.load_cpus:
        # This process (the storms' and lateness' client) beside wrk, apart
        # from the single-process peers; those with workers get every CPU.
        os.sched_setaffinity(0, args.load_cpus)
    say(f"load generator: {data['load_generator']}; machine: {data['machine']}")
    peers: list[Peer] = []
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        for name in args.peers:
            port = _peers.free_port()
            argv = _peers.command(name, port, Path(tmp))
            if isinstance(argv, str):
                say(f"{name}: SKIPPED: {argv}")
                data["skipped"][name] = argv
                continue
            out = Path(tmp) / f"{name}.out"
            cpus = args.server_cpus if single_process(name) else args.all_cpus
            peers.append(Peer(name, argv, port, out, cpus))
        try:
            for peer in peers:
                peer.start()
            for peer in peers:
                peer.wait_ready()
                say(f"{peer.name}: ready on port {peer.port} (pid {peer.pid})")
            data |= measure(peers, args, tool)
            for peer in (p for p in peers if p.name.startswith("closedemo")):
                stats = get_stats(peer.port)
                check_log(data, Path(tmp), peer.name, stats["interrupted"])
            if args.profile:
                profile(peers, args, tool)
        except HarnessError:
            for peer in peers:
                print(f"--- {peer.name} output ---\n{peer.tail()}", file=sys.stderr)
            raise
        finally:
            for peer in peers:
                peer.stop()
    summarize(data)
    report(data)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(data, indent=2) + "\n")
    print(f"\nJSON: {args.json}")
    chart = write_chart(data, args.json.with_suffix(".png"), BASELINE)
    print(f"chart: {chart}" if chart else "no chart: pip install matplotlib")
    if args.update_docs:
        _readme.update(README, data, FIGURES)
        print(f"table: {README}")
    return 0


def check_log(data: dict[str, Any], workdir: Path, name: str, interrupted: int) -> None:
    """Check closedemo's reporting: every interruption logged, on its own line
    or counted in a rate-limit summary line ("... and N more interruptions").
    """
    text = "".join(f.read_text("utf-8", "replace") for f in workdir.glob(f"{name}.*"))
    lines = text.count("Connection interrupted:")
    summarized = [int(n) for n in re.findall(r"\.\.\. and (\d+) more interr", text)]
    data[f"{name}_log"] = {
        "interruption_lines": lines,
        "summary_lines": len(summarized),
        "summarized": sum(summarized),
        "interrupted": interrupted,
    }
    data["checks"].append(
        f"{name} logged {lines:,} interruption lines and {len(summarized):,} "
        f"summary lines for {sum(summarized):,} more, of {interrupted:,} interrupted"
    )


def main(argv: list[str] | None = None) -> int:
    try:
        return run(parse(argv))
    except (HarnessError, OSError) as e:
        print(f"\nharness error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
