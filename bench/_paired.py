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


def cycle_order(
    names: Sequence[str],
    focus: str | None = None,
    weight: int = 1,
    lead: str | None = None,
) -> list[str]:
    """
    The peers' order in a cycle: C{node} just before the C{_workers} peers,
    whose quotient to Node is taken slice by slice in the same cycle, and
    among those C{lead} first (the others' quotient to it is taken the same
    way); the C{focus} peer (if there) C{weight} times, spread over the others.
    """
    workers = [n for n in names if n.endswith("_workers")]
    workers.sort(key=lambda n: n != lead)  # stable: the rest keep their order
    tail = [n for n in names if n == "node"] + workers
    rest = [n for n in names if n not in tail and n != focus]
    if focus is None or focus not in names:
        return rest + tail
    order: list[str] = []
    for part in range(weight):
        order += [
            focus,
            *rest[part * len(rest) // weight : (part + 1) * len(rest) // weight],
        ]
    return order + tail


def schedule(baseline: str, order: Sequence[str], cycles: int) -> list[str]:
    """The slices in order: the baseline before and after every other slice."""
    found = [baseline]
    for _ in range(cycles):
        for name in order:
            found += [name, baseline]
    return found


Measured = list[tuple[str, float]]
"""Each slice's peer and figure, in the order measured."""


def run(
    baseline: str, order: Sequence[str], cycles: int, measure: Callable[[str], float]
) -> Measured:
    """Measure the slices of L{schedule} in turn."""
    return [(name, measure(name)) for name in schedule(baseline, order, cycles)]


def by_peer(measured: Measured) -> dict[str, list[float]]:
    """Each peer's figures, in the order measured."""
    found: dict[str, list[float]] = {}
    for name, value in measured:
        found.setdefault(name, []).append(value)
    return found


def ratios(baseline: str, measured: Measured) -> dict[str, list[float]]:
    """
    Each other peer's slices, each over the mean of the baseline slices just
    before and just after it.
    """
    found: dict[str, list[float]] = {}
    for at in range(1, len(measured) - 1):
        name, value = measured[at]
        before, after = measured[at - 1], measured[at + 1]
        if name != baseline and before[0] == after[0] == baseline:
            found.setdefault(name, []).append(value / ((before[1] + after[1]) / 2))
    return found


def quotients(measured: Measured, top: str, bottom: str) -> list[float]:
    """Each slice of C{top} over the last slice of C{bottom} before it."""
    found: list[float] = []
    last: float | None = None
    for name, value in measured:
        if name == bottom:
            last = value
        elif name == top and last is not None:
            found.append(value / last)
    return found
