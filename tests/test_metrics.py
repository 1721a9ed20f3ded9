"""
Metrics and JSON logs read the same outcome records as /stats.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

from prometheus_client import generate_latest
from twisted.logger import (
    ILogObserver,
    Logger,
    capturedLogs,
    eventsFromJSONLogFile,
    formatEvent,
    globalLogPublisher,
)
from twisted.trial.unittest import SynchronousTestCase

from twisted_close import Ledger
from twisted_close.closedemo.site import METRICS_HINT, optional_metrics
from twisted_close.logs import json_lines_observer, json_observer
from twisted_close.metrics import metrics_registry

from .helpers import demo_server

METRICS = "twisted_close.metrics"


def log_an_outcome_and(observer: ILogObserver, unrelated: str) -> None:
    """
    Log, through C{observer}, the outcome of a client at port 5555 leaving
    C{/slow}, then C{unrelated} (a format, n=1) in another namespace.
    """
    globalLogPublisher.addObserver(observer)
    try:
        server, _ = demo_server()
        server.connect(port=5555).request("/slow").close()
        Logger(namespace="other").info(unrelated, n=1)
    finally:
        globalLogPublisher.removeObserver(observer)


class MetricsTests(SynchronousTestCase):
    def test_counters_follow_the_ledger_exactly(self) -> None:
        server, ledger = demo_server(delay=1, max_pending=3)
        registry = metrics_registry(ledger)
        done = server.get("/done")
        closed, reset = server.get("/closed"), server.get("/reset")
        server.advance(0.3)
        closed.close()
        reset.reset()
        server.advance(0.7)
        assert done.response is not None
        server.get("/?delay=bad")
        held = [server.get(f"/held{n}") for n in range(3)]
        server.get("/one-too-many")
        text = generate_latest(registry).decode()
        expected = [
            "twisted_close_requests_completed_total 1.0",
            'twisted_close_requests_interrupted_total{ending="client_closed"} 1.0',
            'twisted_close_requests_interrupted_total{ending="client_reset"} 1.0',
            'twisted_close_requests_interrupted_total{ending="stream_reset"} 0.0',
            'twisted_close_requests_server_ended_total{ending="shutdown"} 0.0',
            'twisted_close_requests_rejected_total{reason="bad_request"} 1.0',
            'twisted_close_requests_rejected_total{reason="overloaded"} 1.0',
            "twisted_close_requests_pending 3.0",
            "twisted_close_interruption_seconds_count 2.0",
            'twisted_close_interruption_seconds_bucket{le="0.25"} 0.0',
            'twisted_close_interruption_seconds_bucket{le="0.5"} 2.0',
        ]
        for line in expected:
            self.assertIn(line + "\n", text)
        for client in held:
            client.close()
        text = generate_latest(registry).decode()
        self.assertIn("twisted_close_requests_pending 0.0\n", text)
        self.assertIn(
            'twisted_close_requests_interrupted_total{ending="client_closed"} 4.0\n',
            text,
        )

    def test_without_metrics_the_path_says_how_to_turn_them_on(self) -> None:
        server, _ = demo_server()
        response = server.get("/metrics").response
        assert response is not None
        self.assertEqual(response.status, 404)
        self.assertIn(b"pip install '.[metrics]'", response.body)

    def test_the_plugin_does_without_prometheus_client(self) -> None:

        saved = {n: sys.modules.get(n) for n in ("prometheus_client", METRICS)}
        # None in sys.modules makes the import fail as if not installed.
        sys.modules["prometheus_client"] = None  # type: ignore[assignment]
        del sys.modules[METRICS]
        try:
            with capturedLogs() as events:
                self.assertIsNone(optional_metrics(Ledger()))
        finally:
            sys.modules.update(saved)  # type: ignore[arg-type]
        [event] = events
        self.assertIn("pip install '.[metrics]'", formatEvent(event))

    def test_the_hint_is_what_the_readme_says(self) -> None:
        page = Path(__file__).parent.parent / "docs" / "operating.md"
        said = "`pip install '.[metrics]'` adds prometheus-client"
        self.assertIn(said, page.read_text())
        self.assertIn("pip install '.[metrics]'", METRICS_HINT)


class JSONLogTests(SynchronousTestCase):
    def test_rfc7464_records_read_back_by_twisted(self) -> None:
        out = io.StringIO()
        observer = json_observer(out)
        log_an_outcome_and(observer, "unrelated {n}")
        events = list(eventsFromJSONLogFile(io.StringIO(out.getvalue())))
        [event] = [e for e in events if "outcome" in e]
        self.assertEqual(
            event["outcome"],
            {
                "method": "GET",
                "path": "/slow",
                "client": "127.0.0.1:5555",
                "elapsed": 0.0,
                "ending": "client_closed",
                "cancelled": 1,
                "detail": "",
                "reason": "client closed the connection",
                # Before any byte of the answer was sent.
                "phase": "waiting",
                "delivery": "",
                "unacknowledged": 0,
            },
        )
        self.assertEqual(event["ending"], "client_closed")
        self.assertIn("unrelated {n}", [e["log_format"] for e in events])


class LimitMetricsTests(SynchronousTestCase):
    def test_refusals_by_a_limit_are_counted_by_reason(self) -> None:
        server, ledger = demo_server(
            max_streams=3, max_streams_per_client=2, max_pending_per_client=1
        )
        registry = metrics_registry(ledger)
        server.get("/events"), server.get("/outcomes"), server.get("/events")
        server.connect("127.0.0.2").request("/events")
        server.connect("127.0.0.2").request("/events")
        server.get("/slow"), server.get("/slow")
        text = generate_latest(registry).decode()
        for reason, n in (
            ("client_streams", 1),
            ("too_many_streams", 1),
            ("client_pending", 1),
            ("overloaded", 0),
        ):
            self.assertIn(
                f'twisted_close_requests_rejected_total{{reason="{reason}"}} {n}.0\n',
                text,
            )
        self.assertIn(
            'twisted_close_requests_server_ended_total{ending="stalled"} 0.0\n', text
        )

    def test_json_lines_one_object_a_line_with_no_separator(self) -> None:
        out = io.StringIO()
        observer = json_lines_observer(out)
        log_an_outcome_and(observer, "two\nlines {n}")
        lines = out.getvalue().splitlines()
        self.assertNotIn("\x1e", out.getvalue())
        events = [json.loads(line) for line in lines]
        [event] = [e for e in events if "outcome" in e]
        self.assertEqual(event["outcome"]["reason"], "client closed the connection")
        self.assertEqual(event["outcome"]["client"], "127.0.0.1:5555")
        self.assertIn("two\nlines {n}", [e["log_format"] for e in events])


class PhaseMetricsTests(SynchronousTestCase):
    def test_cut_short_requests_are_counted_by_their_phase(self) -> None:
        server, ledger = demo_server(delay=2)
        registry = metrics_registry(ledger)
        server.get("/slow").close()  # before any byte of the answer
        stream = server.get("/events")  # its head is out: answering
        server.advance(0.5)
        stream.reset()
        text = generate_latest(registry).decode()
        prefix = "twisted_close_requests_cut_short_by_phase_total"
        self.assertIn(f'{prefix}{{ending="client_closed",phase="waiting"}} 1.0', text)
        self.assertIn(f'{prefix}{{ending="client_reset",phase="answering"}} 1.0', text)
        # Carried over with the other counters (workers, restarts).
        again = Ledger()
        again.restore(ledger.state())
        self.assertEqual(again.totals().phases, ledger.totals().phases)
