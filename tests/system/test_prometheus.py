"""
docs/prometheus/: the alert rules pass C{promtool check rules} and their
own unit tests (C{promtool test rules}), and a real Prometheus, run with
the shipped scrape config, scrapes two closedemo instances behind nginx and
answers "interruptions per second by reason" across both.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from ..helpers import replaced_once
from ..twistd_process import wait_until
from .test_nginx import free_port, running_cluster

DOCS = Path(__file__).resolve().parents[2] / "docs" / "prometheus"
PAGE = DOCS.parent / "prometheus.md"


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"{name} is not installed, so docs/prometheus cannot be tested: "
            "install it (Debian: apt-get install prometheus; scripts/test does this)"
        )
    return found


def promtool(*argv: str) -> str:
    run = subprocess.run(
        [tool("promtool"), *argv], cwd=DOCS, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def test_the_rules_are_valid() -> None:
    out = promtool("check", "rules", "rules.yml")
    assert "SUCCESS: 5 rules found" in out
    promtool("check", "config", "prometheus.yml")


def test_each_alert_fires_where_its_unit_test_says() -> None:
    assert "SUCCESS" in promtool("test", "rules", "rules_test.yml")


def render(directory: Path, targets: tuple[int, int]) -> Path:
    """
    The shipped config with the instances' ports, a one-second scrape and
    the rules' absolute path; each replaced text must occur once.
    """
    conf = (DOCS / "prometheus.yml").read_text()
    replacements = {
        "scrape_interval: 15s": "scrape_interval: 1s",
        "evaluation_interval: 15s": "evaluation_interval: 1s",
        "- rules.yml": f"- {DOCS / 'rules.yml'}",
        "- 127.0.0.1:8001": f"- 127.0.0.1:{targets[0]}",
        "- 127.0.0.1:8002": f"- 127.0.0.1:{targets[1]}",
    }
    conf = replaced_once(conf, replacements, "prometheus.yml")
    path = directory / "prometheus.yml"
    path.write_text(conf)
    return path


@contextmanager
def prometheus(directory: Path, targets: tuple[int, int]) -> Iterator[int]:
    port = free_port()
    with open(directory / "output", "wb") as output:
        process = subprocess.Popen(
            [
                tool("prometheus"),
                f"--config.file={render(directory, targets)}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def query(port: int, promql: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode(
        {"query": promql}
    )
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            body = json.load(answer)
    except OSError:
        return []  # not listening yet
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def value(port: int, promql: str) -> float | None:
    result = query(port, promql)
    return float(result[0]["value"][1]) if result else None


def test_prometheus_counts_interruptions_by_reason_across_instances(
    tmp_path: Path,
) -> None:
    with running_cluster(tmp_path) as cluster:
        (tmp_path / "prometheus").mkdir()
        with prometheus(tmp_path / "prometheus", (cluster.a_port, cluster.b_port)) as p:
            wait_until(lambda: value(p, "sum(up)") == 2, "both instances up", 20)

            # Clients that leave nginx before their answer, spread by nginx.
            for _ in range(6):
                with socket.create_connection(("127.0.0.1", cluster.port)) as client:
                    client.sendall(b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n")
                    wait_until(lambda: sum(cluster.pending()) == 1, "pending", 5)
                wait_until(lambda: sum(cluster.pending()) == 0, "reported", 5)

            total = (
                'sum(twisted_close_requests_interrupted_total{ending="client_closed"})'
            )
            wait_until(lambda: value(p, total) == 6, "6 interruptions scraped", 10)
            # Each instance had its share: the sum is across both.
            each = query(
                p,
                'twisted_close_requests_interrupted_total{ending="client_closed"} > 0',
            )
            assert len({r["metric"]["instance"] for r in each}) == 2, each

            # The page's query, over the last 20 s rather than 5 min.
            [by_reason] = re.findall(r"```promql\n(.*?)\n```", PAGE.read_text())
            assert "[5m]" in by_reason
            rates = {
                r["metric"]["ending"]: float(r["value"][1])
                for r in query(p, by_reason.replace("[5m]", "[20s]"))
            }
            assert rates["client_closed"] > 0, rates
            assert rates["peer_timed_out"] == 0, rates
            # The descriptors the DescriptorsShort alert reads, per instance.
            assert len(query(p, "process_open_fds / process_max_fds < 0.9")) == 2
