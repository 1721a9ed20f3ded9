"""
The access log (L{twisted_close.logs.AccessLog}, C{--access-log}): each
field from the network cut, the file rotated by size, at most so many
files kept.
"""

from __future__ import annotations

import os
import re

from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from twisted_close.logs import AccessLog

from .helpers import demo_server, temporary_directory

LONG = "/" + "a" * 16000


class AccessLogLineTests(SynchronousTestCase):
    def test_a_file_line_is_bounded_and_quotes_cannot_end_a_field(self) -> None:
        path = os.path.join(temporary_directory(self), "access.log")
        server, _ = demo_server(delay=0, access_log=path)
        # Within twisted.web's 16 KiB head.
        server.connect().request(
            "/" + "a" * 8000 + "?delay=0",
            headers={"User-Agent": 'x" "y' + "u" * 3000, "Referer": "r" * 3000},
        )
        server.advance(0)
        with open(path, encoding="utf-8") as f:
            [line] = f.read().splitlines()
        self.assertLess(len(line), 1200)
        self.assertIn('"GET /' + "a" * 255 + '...[8009-bytes] HTTP/1.1" 200 5', line)
        self.assertIn('"x\\"\\x20\\"y', line)
        self.assertEqual(len(re.findall(r"\.\.\.\[\d+-bytes\]", line)), 3)

    def test_the_server_log_lines_are_bounded_too(self) -> None:
        server, _ = demo_server(delay=0, access_log="-")
        server.site.doStart()  # twisted.web's log goes to the server's then
        self.addCleanup(server.site.doStop)
        with capturedLogs() as events:
            server.get(LONG + "?delay=0")
            server.advance(0)
        [line] = [formatEvent(e) for e in events if "HTTP/1.1" in formatEvent(e)]
        self.assertLess(len(line), 600)
        self.assertIn("...[16009-bytes]", line)


class RotationTests(SynchronousTestCase):
    def test_a_flood_leaves_at_most_the_files_allowed(self) -> None:
        directory = temporary_directory(self)
        path = os.path.join(directory, "access.log")
        server, _ = demo_server(
            delay=0, access_log=path, access_log_files=3, access_log_size=10_000
        )
        client = server.connect()
        for _ in range(500):
            client.request(LONG + "?delay=0")
            server.advance(0)
        self.assertEqual(len(client.responses), 500)
        files = sorted(os.listdir(directory))
        self.assertEqual(files, ["access.log", "access.log.1", "access.log.2"])
        for name in files:
            # Rotated once past the size: at most one line more.
            self.assertLess(os.path.getsize(os.path.join(directory, name)), 11_000)

    def test_bad_bounds_are_value_errors(self) -> None:
        for bad in ({"files": 1}, {"size": 0}, {"files": 2.5}, {"size": True}):
            with self.assertRaises(ValueError):
                AccessLog("x.log", **bad)

    def test_nothing_is_opened_before_the_first_line(self) -> None:
        directory = temporary_directory(self)
        log = AccessLog(os.path.join(directory, "a.log"))
        self.assertEqual(os.listdir(directory), [])
        log.close()
