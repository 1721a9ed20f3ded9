"""
The picture of a run: each figure's ratio to the baseline, one bar per peer,
as a PNG beside the JSON.  Where the ratio is a median of paired ratios
(requests/s and abort, and their CPU-time forms), a whisker shows its 95%
confidence interval; the C{_workers} peers get one more row, their
requests/s over Node's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

FIGURES = {
    "requests_per_s": "requests/s (higher is better)",
    "requests_per_cpu_s": "requests per CPU-second",
    "workers_vs_node": "requests/s over node's\n(workers peers; higher is better)",
    "kib_per_held": "KiB per held request",
    "abort_ms": "abort until all reported",
    "abort_cpu_ms": "abort: the peer's CPU time",
    "lateness_p50_ms": "lateness p50",
    "lateness_p99_ms": "lateness p99",
}


def write_chart(data: dict[str, Any], path: Path, baseline: str) -> Path | None:
    """
    Draw C{data["ratios"]} into C{path}; L{None} if matplotlib is missing
    (the JSON still has every figure).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    paired: dict[str, dict[str, dict[str, Any]]] = {
        k: v for k, v in data.get("paired", {}).items() if isinstance(v, dict)
    }
    ratios = {p: dict(r) for p, r in data.get("ratios", {}).items()}
    for peer, found in paired.get("workers_vs_node", {}).items():
        if peer in ratios:
            ratios[peer]["workers_vs_node"] = found["median"]
    peers = [p for p in ratios if p != baseline]
    figures = [f for f in FIGURES if any(f in ratios[p] for p in peers)]
    if not peers or not figures:
        return None
    height = 0.8 / len(peers)
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.3 * len(peers) * len(figures)))
    for i, peer in enumerate(peers):
        ys = [n + i * height for n in range(len(figures))]
        values = [ratios[peer].get(f, 0.0) for f in figures]  # 0: not measured
        cis = [paired.get(f, {}).get(peer, {}).get("ci95") for f in figures]
        whiskers = [
            [v - ci[0] if ci else 0.0 for v, ci in zip(values, cis, strict=True)],
            [ci[1] - v if ci else 0.0 for v, ci in zip(values, cis, strict=True)],
        ]
        bars = ax.barh(ys, values, height=height, label=peer, xerr=whiskers)
        labels = [
            (f"{v:.2f}x" + (f" ({ci[0]:.2f}-{ci[1]:.2f})" if ci else "")) if v else ""
            for v, ci in zip(values, cis, strict=True)
        ]
        ax.bar_label(bars, labels=labels, fontsize=6, padding=3)
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_yticks([n + 0.4 - height / 2 for n in range(len(figures))])
    ax.set_yticklabels([FIGURES[f] for f in figures])
    ax.invert_yaxis()
    ax.set_xlabel(
        f"ratio to {baseline} (1.0, the line); lower is better but for requests;\n"
        "whiskers: the 95% CI of a median of paired ratios"
    )
    ax.legend(loc="lower right", fontsize=8)
    machine = data.get("machine", {})
    commit = machine.get("closedemo_commit", "")
    ax.set_title(f"python -m bench{' at ' + commit if commit else ''}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
