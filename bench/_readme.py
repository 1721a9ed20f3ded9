"""
The README's table of the tracked run, made from C{bench/results.json} by
C{python -m bench --update-docs}, so that the table cannot drift from the
run it cites (a test compares them).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._peers import BASELINE

START = (
    "<!-- bench table: python -m bench --update-docs writes it "
    "from bench/results.json -->"
)
DASH = "\N{EN DASH}"  # between the ends of a range, as the README writes it
END = "<!-- /bench table -->"

NAMES = {
    "closedemo": "closedemo",
    "bare_twisted": "bare Twisted",
    "node": "Node",
    "aiohttp": "aiohttp",
    "closedemo_workers": "closedemo `--workers 2`",
    "closedemo_asyncio": "closedemo on asyncio",
    "closedemo_written": "closedemo `--delivery written`",
    "bare_twisted_workers": "bare Twisted, 2 processes",
    "bare_twisted_aa": "bare Twisted again (A/A)",
}


def table(data: dict[str, Any], figures: list[tuple[str, str, str]]) -> str:
    """
    The Markdown of a run: a line naming it, then each figure for each
    peer, with its ratio to the baseline (for a paired figure, the median of
    the pairs and its 95% interval).
    """
    m, peers, paired = data["machine"], data["peers"], data["paired"]
    ratios: dict[str, dict[str, float]] = data.get("ratios", {})
    names = list(peers)
    lines = [
        f"One full run at commit `{m['closedemo_commit']}` (`bench/results.json`): "
        f"{m['cores']}-core {m['cpu']}, Linux, Python {m['python']}, Twisted "
        f"{m['twisted']}, Node {m['node']}, aiohttp {m['aiohttp']}, load from "
        f"{data['load_generator'].split()[0]}; {data['sizes']['cycles']} cycles of "
        "paired slices, storms paired, the rest medians of "
        f"{data['sizes']['rounds']} rounds.",
        "",
        "| figure | " + " | ".join(NAMES.get(n, n) for n in names) + " |",
        "| --- |" + " --- |" * len(names),
    ]
    for key, label, fmt in figures:
        cells = []
        for name in names:
            value = peers[name].get(key)
            if value is None:
                cells.append(DASH)
                continue
            cell = fmt.format(value).replace("-", DASH)
            ratio = ratios.get(name, {}).get(key)
            found = paired.get(key, {}).get(name)
            if ratio is not None and name != BASELINE:
                if found is not None:
                    low, high = found["ci95"]
                    cell += f" ({ratio:.2f}x, {low:.2f}{DASH}{high:.2f})"
                else:
                    cell += f" ({ratio:.2f}x)"
            cells.append(cell)
        lines.append(f"| {label.replace('->', '→')} | " + " | ".join(cells) + " |")
    for name, q in paired.get("workers_vs_node", {}).items():
        low, high = q["ci95"]
        lines.append("")
        lines.append(
            f"{NAMES.get(name, name)} against Node, requests/s slice by slice: "
            f"{q['median']:.2f}x (95% interval {low:.2f}{DASH}{high:.2f})."
        )
    return "\n".join(lines) + "\n"


def update(
    readme: Path, data: dict[str, Any], figures: list[tuple[str, str, str]]
) -> None:
    """
    Put the table of C{data} between the markers in C{readme}.
    """
    write_between(readme, START, END, lambda: table(data, figures))


def write_between(readme: Path, start: str, end: str, body: Callable[[], str]) -> None:
    """
    Put what C{body} makes between the markers C{start} and C{end} in
    C{readme}, once they are found there.
    """
    text = readme.read_text()
    head, found_start, rest = text.partition(start)
    _, found_end, tail = rest.partition(end)
    if not found_start or not found_end:
        raise ValueError(f"{readme} has no {start!r} ... {end!r} markers")
    readme.write_text(f"{head}{start}\n{body()}{end}{tail}")
