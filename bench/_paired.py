"""
Paired requests/s: the machine's speed drifts over seconds to minutes, so a
ratio of two figures measured a minute apart says more about the drift than
about the servers.  Short slices of load alternate between the baseline and
each other peer (B, P1, B, P2, ..., B, then again), and each peer's slice is
compared with the mean of the two baseline slices on either side of it: one
ratio per slice, taken within a few seconds, and the median of them kept
with its interquartile range.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any


def quantile(values: Sequence[float], q: float) -> float:
    """The C{q} quantile (0..1) of C{values}, linear between the two nearest."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    at = q * (len(ordered) - 1)
    low = int(at)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


def median_ci95(values: Sequence[float]) -> tuple[float, float]:
    """
    A distribution-free 95% confidence interval of the median of C{values}:
    the order statistics n/2 -+ 0.98 sqrt(n) (the binomial's normal
    approximation), clipped to the extremes.
    """
    ordered = sorted(values)
    n = len(ordered)
    half = 0.98 * math.sqrt(n)
    low = max(0, math.floor(n / 2 - half) - 1)  # 1-based rank -> index
    high = min(n - 1, math.ceil(n / 2 + half) - 1)
    return ordered[low], ordered[high]


def spread(values: Sequence[float]) -> dict[str, Any]:
    """The median of C{values}, its 95% confidence interval, quartiles,
    extremes and count.
    """
    return {
        "median": quantile(values, 0.5),
        "ci95": list(median_ci95(values)),
        "q1": quantile(values, 0.25),
        "q3": quantile(values, 0.75),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def cycle_order(names: Sequence[str]) -> list[str]:
    """
    The peers' order in a cycle: C{node} just before the C{_workers} peers,
    whose quotient to Node is taken slice by slice in the same cycle.
    """
    workers = [n for n in names if n.endswith("_workers")]
    node = [n for n in names if n == "node"]
    return [n for n in names if n not in workers + node] + node + workers


def schedule(baseline: str, others: Sequence[str], cycles: int) -> list[str]:
    """The slices in order: the baseline before and after every other slice."""
    order = [baseline]
    for _ in range(cycles):
        for name in others:
            order += [name, baseline]
    return order


def run(
    baseline: str,
    others: Sequence[str],
    cycles: int,
    measure: Callable[[str], float],
) -> dict[str, list[float]]:
    """Measure the slices of L{schedule} in order; each peer's values in order."""
    slices: dict[str, list[float]] = {baseline: [], **{n: [] for n in others}}
    for name in schedule(baseline, others, cycles):
        slices[name].append(measure(name))
    return slices


def ratios(
    baseline: str, others: Sequence[str], slices: dict[str, list[float]]
) -> dict[str, list[float]]:
    """
    Each other peer's slices, each over the mean of the baseline slices just
    before and just after it, in the order of L{schedule}.
    """
    base = slices[baseline]
    found: dict[str, list[float]] = {n: [] for n in others}
    for cycle in range(len(base) // max(1, len(others))):
        for i, name in enumerate(others):
            at = cycle * len(others) + i
            if at + 1 >= len(base) or cycle >= len(slices[name]):
                return found
            beside = (base[at] + base[at + 1]) / 2
            found[name].append(slices[name][cycle] / beside)
    return found


def quotients(top: Sequence[float], bottom: Sequence[float]) -> list[float]:
    """C{top[i] / bottom[i]}: two peers' slices of the same cycles."""
    return [t / b for t, b in zip(top, bottom, strict=True)]
