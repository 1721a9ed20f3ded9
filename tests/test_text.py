"""
A request's method and path cannot pass for other fields of a log line:
spaces, white space, control characters and backslashes are escaped in the
text line; the JSON log keeps them as they came.
"""

from __future__ import annotations

import io
import json
import re

from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from twisted_close import Ending, Ledger, Outcome
from twisted_close._text import _log_text, printable
from twisted_close.logs import json_observer

from .helpers import demo_server

FORGED = "/admin from 203.0.113.9:4444 after 0.01 s (client closed the connection)"
LINE = re.compile(
    r"Connection interrupted: (?P<method>\S+) (?P<path>\S+) from (?P<client>\S+) "
    r"after (?P<elapsed>\d+\.\d\d) s(?: while (?P<phase>\w+))? "
    r"\((?P<reason>[^;)]+)(?:; (?P<detail>.*))?\)"
)


class EscapeTests(SynchronousTestCase):
    def test_one_word_whatever_the_text(self) -> None:
        self.assertEqual(_log_text("/plain/path?q=1"), "/plain/path?q=1")
        self.assertEqual(_log_text("/a b"), "/a\\x20b")
        self.assertEqual(_log_text("/a\\x20b"), "/a\\\\x20b")
        self.assertEqual(
            _log_text("/a\tb\nc\u00a0d\u2028e"), "/a\\tb\\nc\\xa0d\\u2028e"
        )
        self.assertEqual(printable(b"/\xff x"), "/\\xff\\x20x")
        for text in (FORGED, "a\\ b", "\\\\", " ", "\x1b[31m"):
            self.assertNotRegex(_log_text(text), r"\s")


class LogLineTests(SynchronousTestCase):
    def outcome(self, method: str, path: str) -> Outcome:
        return Outcome(method, path, "192.0.2.1:5000", 1.5, Ending.CLIENT_CLOSED)

    def test_a_forged_path_stays_one_field(self) -> None:
        ledger = Ledger()
        with capturedLogs() as events:
            ledger.record(self.outcome("GET", FORGED))
        [line] = [formatEvent(e) for e in events]
        match = LINE.fullmatch(line)
        assert match is not None, line
        self.assertEqual(match["client"], "192.0.2.1:5000")
        self.assertEqual(match["elapsed"], "1.50")
        self.assertEqual(match["path"], FORGED.replace(" ", "\\x20"))
        # The record itself keeps it as it came.
        self.assertEqual(events[0]["outcome"].path, FORGED)

    def test_a_forged_method_stays_one_field(self) -> None:
        ledger = Ledger()
        with capturedLogs() as events:
            ledger.record(self.outcome("GET /a from 1.2.3.4:5", "/b"))
        match = LINE.fullmatch(formatEvent(events[0]))
        assert match is not None
        self.assertEqual(match["method"], "GET\\x20/a\\x20from\\x201.2.3.4:5")
        self.assertEqual(match["client"], "192.0.2.1:5000")

    def test_the_json_log_keeps_the_raw_path(self) -> None:
        ledger = Ledger()
        out = io.StringIO()
        observer = json_observer(out)
        with capturedLogs() as events:
            ledger.record(self.outcome("GET", FORGED))
        observer(events[0])
        record = json.loads(out.getvalue().lstrip("\x1e"))
        self.assertEqual(record["outcome"]["path"], FORGED)
        self.assertEqual(record["path"], FORGED.replace(" ", "\\x20"))

    def test_over_http_1_1_a_backslash_cannot_fake_an_escape(self) -> None:
        # HTTP/1.1 splits its request line on spaces, so a path holds none;
        # what it can hold is a backslash, written doubled.
        server, _ = demo_server(delay=5)
        client = server.get("/a\\x20from\\x20203.0.113.9:4444")
        server.advance(1)
        with capturedLogs() as events:
            client.close()
        [event] = [e for e in events if "outcome" in e]
        match = LINE.fullmatch(formatEvent(event))
        assert match is not None, formatEvent(event)
        self.assertEqual(match["path"], "/a\\\\x20from\\\\x20203.0.113.9:4444")
        self.assertEqual(event["outcome"].path, "/a\\x20from\\x20203.0.113.9:4444")

    def test_over_http_1_1_twisted_refuses_other_white_space(self) -> None:
        # Twisted answers 400 to a request line with a no-break space (UTF-8
        # C2 A0) or a vertical tab in its path: HTTP/2 is the way in for
        # those, tested in test_h2.
        server, ledger = demo_server(delay=5)
        for path in (b"/x\xc2\xa0from", b"/x\x0bfrom"):
            client = server.connect()
            client.send(
                b"GET " + path + b" HTTP/1.1\r\nHost: localhost\r\n\r\n", b"GET"
            )
            self.assertTrue(client.transport.value().startswith(b"HTTP/1.1 400 "))
        self.assertEqual(ledger.pending, 0)

    def test_a_clock(self) -> None:
        # The rate limit does not change the line.
        ledger = Ledger(Clock())
        with capturedLogs() as events:
            ledger.record(self.outcome("GET", "/a b"))
        self.assertIn("GET /a\\x20b from", formatEvent(events[0]))


class BoundTests(SynchronousTestCase):
    def test_a_long_field_is_cut_with_its_length_noted(self) -> None:
        from twisted_close._text import FIELD_BYTES, raw_text

        path = b"/" + b"a" * 16383
        self.assertEqual(
            raw_text(path), path[:FIELD_BYTES].decode() + "...[16384-bytes]"
        )
        self.assertEqual(
            printable(path), path[:FIELD_BYTES].decode() + "...[16384-bytes]"
        )
        short = b"/" + b"b" * (FIELD_BYTES - 1)
        self.assertEqual(raw_text(short), short.decode())

    def test_control_bytes_stay_bounded_once_escaped(self) -> None:
        from twisted_close._text import raw_text

        path = b"/" + bytes(range(1, 32)) * 530  # 16 KB of control bytes
        self.assertLess(len(printable(path)), 4 * 256 + 20)
        self.assertLess(len(json.dumps(raw_text(path))), 6 * 256 + 20)

    def test_the_outcome_and_its_log_line_are_bounded(self) -> None:
        server, ledger = demo_server(delay=5)
        outcomes: list[Outcome] = []
        ledger.observe(outcomes.append)
        with capturedLogs() as logged:
            server.get("/" + "x" * 16000).close()
            server.advance(1)
        [outcome] = outcomes
        self.assertTrue(outcome.path.endswith("...[16001-bytes]"))
        self.assertLess(len(outcome.path), 300)
        [line] = [formatEvent(e) for e in logged if "outcome" in e]
        self.assertLess(len(line), 500)
