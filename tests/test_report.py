"""
The rate-limited log of outcomes: a storm of aborts logs a few lines and
one summary a second, while the counters stay exact.
"""

from __future__ import annotations

from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from twisted_close import Ending
from twisted_close.testing import Connection

from .helpers import lines, serve


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
