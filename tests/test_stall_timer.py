"""
A finished HTTP/2 answer whose end waits on flow control is given a stall
timer; once the end goes out, that timer is cancelled, so a completed
stream is never reset later.  In memory, on a Clock.
"""

from __future__ import annotations

from typing import Any

from h2.events import StreamReset
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site

from twisted_close import Ledger, WorkResource
from twisted_close._policy import DEFAULT_POLICY

from .twisted_pins import _client_events, _read_and_open_window, _spin, h2_serving


class _Big(WorkResource):
    """
    Answers more than the default HTTP/2 window, under a watch.
    """

    def begin(self, request: Any) -> bytes:
        self.watch(request)
        return b"x" * 70_000


class StallTimerTests(SynchronousTestCase):
    def test_a_stream_whose_end_went_out_leaves_no_stall_timer(self) -> None:
        clock = Clock()
        ledger = Ledger(clock)
        site = Site(_Big(clock=clock, ledger=ledger))
        server, client, transport = h2_serving(site, clock, ["/"])
        _spin(clock)
        # The answer is finished; its end waits on the client's window.
        self.assertEqual(ledger.snapshot()["pending"], 1)
        self.assertNotEqual(clock.getDelayedCalls(), [])
        _read_and_open_window(server, client, transport)
        _spin(clock)
        self.assertEqual(ledger.snapshot()["completed"], 1)
        # The end went out: the stall timer is gone, the stream never reset.
        stalls = [
            call
            for call in clock.getDelayedCalls()
            if getattr(getattr(call, "func", None), "__name__", "") == "_stalled"
        ]
        self.assertEqual(stalls, [])
        clock.advance(DEFAULT_POLICY.stall_timeout + 1)
        events = _client_events(client, transport)
        self.assertNotIn(StreamReset, [type(event) for event in events])
