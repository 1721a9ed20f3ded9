"""
The rate-limited log of outcomes: a storm of aborts logs a few lines and
one summary a second, while the counters stay exact.
"""

from __future__ import annotations

import io
import json
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import capturedLogs, textFileLogObserver
from twisted.trial.unittest import SynchronousTestCase

from twisted_close import DelayedResource, Ending, Ledger
from twisted_close._report import Reporter
from twisted_close.closedemo.site import build_site
from twisted_close.logs import json_lines_observer
from twisted_close.testing import Connection, InMemoryServer

from .helpers import lines, serve
from .twisted_pins import h2_serving


class StormTests(SynchronousTestCase):
    def test_a_storm_logs_a_few_lines_and_one_summary_a_second(self) -> None:
        server, ledger = serve()
        clients: list[Connection] = [server.get(f"/{n}") for n in range(3000)]
        with capturedLogs() as events:
            for n, client in enumerate(clients):
                client.reset() if n % 2 else client.close()
            server.advance(1)
        self.assertEqual(len(lines(events, "Connection interrupted")), 50)
        [summary] = lines(events, "... and")
        self.assertEqual(
            summary,
            "... and 2950 more interruptions (1475 client closed the connection, "
            "1475 connection reset by the client)",
        )
        # The counters stay exact.
        self.assertEqual(ledger.interrupted, 3000)
        self.assertEqual(ledger.interruptions[Ending.CLIENT_RESET], 1500)

    def test_the_next_second_logs_lines_again(self) -> None:
        server, _ledger = serve()
        clients = [server.get(f"/{n}") for n in range(60)]
        with capturedLogs() as events:
            for client in clients[:55]:
                client.close()
            server.advance(1)
            for client in clients[55:]:
                client.close()
        self.assertEqual(len(lines(events, "Connection interrupted")), 55)
        self.assertEqual(len(lines(events, "... and 5 more")), 1)


# 16 KB of backslashes and percent-encoded control bytes: the escaping of
# the text log and of JSON each doubles a backslash.
LONG_PATH = "/" + ("%01\\" * 4000)[:16000]


def written(events: list[Any]) -> tuple[int, int, list[str]]:
    """
    The bytes C{events} make in the text log and in the JSON log, and the
    JSON lines.
    """
    text, json_lines = io.StringIO(), io.StringIO()
    text_log, json_log = textFileLogObserver(text), json_lines_observer(json_lines)
    for event in events:
        text_log(event)
        json_log(event)
    return (
        len(text.getvalue().encode("utf-8")),
        len(json_lines.getvalue().encode("utf-8")),
        json_lines.getvalue().splitlines(),
    )


class LogBytesTests(SynchronousTestCase):
    def test_long_paths_at_50_a_second_log_a_bounded_number_of_bytes(self) -> None:
        server, ledger = serve()
        seconds = 4
        with capturedLogs() as events:
            for _ in range(seconds * 50):
                server.get(LONG_PATH).close()
                server.advance(0.02)
            server.advance(1)
        text_bytes, json_bytes, json_lines = written(list(events))
        # Unbounded, each line held the whole path, escaped: megabytes.
        # The budget is 64 KiB a second, and a summary line a second.
        self.assertLess(json_bytes / seconds, 66 * 1024)
        self.assertLess(text_bytes / seconds, 32 * 1024)
        self.assertTrue(all(len(line) < 5000 for line in json_lines))
        self.assertEqual(ledger.interrupted, seconds * 50)
        # The bytes, not the 50 lines, held some back: said in a summary.
        self.assertTrue(lines(list(events), "... and"))

    def test_the_byte_budget_holds_back_lines_under_the_line_budget(self) -> None:
        clock = Clock()
        reporter = Reporter(clock, per_second=1000, bytes_per_second=5000)
        ledger = Ledger(clock, reporter=reporter)
        server = InMemoryServer(DelayedResource(clock=clock, ledger=ledger), clock)
        with capturedLogs() as events:
            for _ in range(20):
                server.get(LONG_PATH).close()
            clock.advance(1)
        logged = lines(list(events), "Connection interrupted")
        self.assertLess(len(logged), 20)
        self.assertGreater(len(logged), 0)
        [summary] = lines(list(events), "... and")
        self.assertIn(f"{20 - len(logged)} more", summary)

    def test_one_60_kb_http2_path_makes_a_bounded_json_line(self) -> None:
        clock = Clock()
        ledger = Ledger(clock)
        site = build_site(clock=clock, ledger=ledger, delay=5)
        # HTTP/2 carries a path as it is: control bytes and all.
        controls = "".join(chr(c) for c in range(1, 32) if c not in (9, 10, 13))
        path = ("/" + (controls + '\\"') * 3000)[:60_000]
        with capturedLogs() as events:
            server, client, _ = h2_serving(site, clock, [path])
            clock.advance(0)
            client.reset_stream(1)
            server.dataReceived(client.data_to_send())
            clock.advance(1)
        self.assertEqual(ledger.interrupted, 1)
        _, json_bytes, [line] = written([e for e in events if "outcome" in e])
        self.assertLess(json_bytes, 8 * 1024)
        record = json.loads(line)
        self.assertTrue(record["outcome"]["path"].endswith("...[60000-bytes]"))
