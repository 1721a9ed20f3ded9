"""
Shared fixtures for the deterministic tests.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence

from twisted.internet.task import Clock
from twisted.logger import LogEvent, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from twisted_close import DelayedResource, Ledger
from twisted_close.closedemo.site import build_site
from twisted_close.testing import InMemoryServer


def delayed_server(
    delay: float = 2.0, max_delay: float = 60.0, body: str = "hello"
) -> tuple[InMemoryServer, DelayedResource]:
    """
    A L{DelayedResource} served in memory on a fresh clock.
    """
    clock = Clock()
    resource = DelayedResource(
        body, delay, max_delay=max_delay, clock=clock, ledger=Ledger()
    )
    return InMemoryServer(resource, clock=clock), resource


def demo_server(
    delay: float = 2.0,
    *,
    tick: float = 1.0,
    max_pending: int | None = None,
    idle_timeout: float | None = 60.0,
) -> tuple[InMemoryServer, Ledger]:
    """
    The closedemo site served in memory on a fresh clock.
    """
    clock = Clock()
    ledger = Ledger(clock, max_pending=max_pending)
    site = build_site(
        clock=clock, ledger=ledger, delay=delay, tick=tick, idle_timeout=idle_timeout
    )
    return InMemoryServer(site, clock=clock), ledger


def serve(
    *, max_pending: int | None = None, idle_timeout: float | None = 60.0
) -> tuple[InMemoryServer, Ledger]:
    """
    The closedemo site as the operating tests use it: 2 s answers, events
    every 0.5 s.
    """
    return demo_server(2, tick=0.5, max_pending=max_pending, idle_timeout=idle_timeout)


def lines(events: Sequence[LogEvent], prefix: str) -> list[str]:
    """
    The log lines, formatted, that start with C{prefix}.
    """
    return [t for e in events if (t := formatEvent(e)).startswith(prefix)]


def temporary_directory(case: SynchronousTestCase) -> str:
    """
    A new directory, removed after C{case}; not trial's C{mktemp()}, which
    under pytest would write into the source tree.
    """
    directory = tempfile.mkdtemp()
    case.addCleanup(shutil.rmtree, directory)
    return directory


def our_calls(server: InMemoryServer) -> list[float]:
    """
    When the pending answers are due: the clock's calls, less the channels'
    idle timeouts (those belong to Twisted, not to us).
    """
    return sorted(
        call.getTime()
        for call in server.clock.getDelayedCalls()
        if getattr(getattr(call, "func", None), "__name__", "") == "_answer"
    )
