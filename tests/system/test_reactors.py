"""
The end-to-end tests run twistd on the reactor the suite is run with:
C{pytest --reactor=asyncio} (or C{TWISTED_CLOSE_TEST_REACTOR=asyncio}) runs
them on Twisted's asyncio reactor, C{pytest} alone on the default one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ..twistd_process import LISTEN, Twistd, http_get, twistd_reactor

EXPECTED = {
    None: "twisted.internet.epollreactor.EPollReactor",
    "asyncio": "twisted.internet.asyncioreactor.AsyncioSelectorReactor",
}


@pytest.fixture
def closedemo(tmp_path: Path) -> Iterator[Twistd]:
    server = Twistd(tmp_path, *LISTEN, "--delay", "0")
    try:
        yield server
    finally:
        server.kill()


def test_twistd_runs_on_the_suites_reactor(closedemo: Twistd) -> None:
    name = twistd_reactor()
    if name not in EXPECTED:
        pytest.skip(f"no expectation for TWISTED_CLOSE_TEST_REACTOR={name}")
    found = closedemo.wait_for_line(r"reactor class: (\S+)\.$")
    assert found.group(1) == EXPECTED[name]
    assert http_get(closedemo.port(), "/") == (200, b"hello")


def test_workers_run_on_the_parents_reactor(tmp_path: Path) -> None:
    name = twistd_reactor()
    if name not in EXPECTED:
        pytest.skip(f"no expectation for TWISTED_CLOSE_TEST_REACTOR={name}")
    server = Twistd(tmp_path, *LISTEN, "--delay", "0", "--workers", "2")
    try:
        expected = EXPECTED[name].rsplit(".", 1)[1]
        for slot in (0, 1):
            found = server.wait_for_line(rf"worker {slot} \(pid \d+\) serving on (\w+)")
            assert found.group(1) == expected
        assert http_get(server.port(), "/") == (200, b"hello")
    finally:
        server.kill()
