"""
L{GracefulDrain}: refuse new work, let pending answers finish within the
grace, end the rest with C{503}, and let those answers leave first; on a
Clock through real channels in memory.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from twisted_close import Ending, GracefulDrain, Ledger, Rejection
from twisted_close.testing import InMemoryServer

from .helpers import lines, our_calls, serve


class DrainTests(SynchronousTestCase):
    def drain(self, ledger: Ledger, server: InMemoryServer) -> Deferred[None]:
        return GracefulDrain(ledger, server.clock, grace=1.0).stopService()

    def test_answers_due_within_the_grace_complete(self) -> None:
        server, ledger = serve()
        client = server.get("/?delay=0.5")
        with capturedLogs() as events:
            stopped = self.drain(ledger, server)
            server.advance(0.5)
            # Answered: the stop waits until that answer has left, which a
            # closed connection shows (the reactor would drop it unsent).
            self.assertNoResult(stopped)
            self.assertTrue(client.closed_by_server)
            server.advance(0.02)
        self.successResultOf(stopped)
        assert client.response is not None
        self.assertEqual(client.response.status, 200)
        self.assertEqual(
            lines(events, "Shutdown drain"),
            [
                "Shutdown drain: 1 answered normally, 0 answered 503, 0 event "
                "streams ended, 0 interrupted by clients, in 0.52 s"
            ],
        )

    def test_answers_due_after_the_grace_get_503_and_a_close(self) -> None:
        server, ledger = serve()
        client = server.get("/?delay=30")
        with capturedLogs() as events:
            stopped = self.drain(ledger, server)
            server.advance(0.99)
            self.assertNoResult(stopped)
            server.advance(0.01)
            # The 503 is written; the stop waits until the connection closed.
            self.assertNoResult(stopped)
            server.advance(0.02)
        self.successResultOf(stopped)
        response = client.response
        assert response is not None
        self.assertEqual(response.status, 503)
        self.assertEqual(response.header("retry-after"), "5")
        self.assertEqual(response.header("connection"), "close")
        self.assertEqual(response.body, b"server shutting down; retry in 5 s\n")
        self.assertTrue(client.closed_by_server)
        self.assertEqual(our_calls(server), [])
        self.assertEqual(ledger.server_endings[Ending.SHUTDOWN], 1)
        self.assertEqual((ledger.interrupted, ledger.pending), (0, 0))
        [line] = lines(events, "Ended by the server")
        self.assertIn("GET / from 127.0.0.1:", line)
        self.assertTrue(
            line.endswith("after 1.00 s while waiting (server shutting down)"), line
        )

    def test_event_streams_end_at_once_and_cleanly(self) -> None:
        server, ledger = serve()
        client = server.get("/events")
        server.advance(0.5)
        stopped = self.drain(ledger, server)
        server.advance(0.02)
        self.successResultOf(stopped)
        # The chunked body was ended properly, and the connection closed.
        self.assertTrue(client.transport.value().endswith(b"\r\n0\r\n\r\n"))
        self.assertTrue(client.closed_by_server)
        self.assertEqual(ledger.server_endings[Ending.SHUTDOWN], 1)
        self.assertEqual(server.clock.getDelayedCalls(), [])

    def test_new_requests_during_the_drain_get_503_at_once(self) -> None:
        server, ledger = serve()
        keep_alive = server.get("/?delay=0.1")
        server.advance(0.1)
        server.get("/?delay=30")
        self.drain(ledger, server)
        keep_alive.request("/again")
        _, refused = keep_alive.responses
        self.assertEqual(refused.status, 503)
        self.assertEqual(refused.header("connection"), "close")
        self.assertEqual(ledger.rejections[Rejection.SHUTTING_DOWN], 1)

    def test_clients_leaving_during_the_drain_are_counted_as_such(self) -> None:
        server, ledger = serve()
        leaving = server.get("/?delay=30")
        with capturedLogs() as events:
            stopped = self.drain(ledger, server)
            server.advance(0.3)
            leaving.close()
        self.successResultOf(stopped)
        [summary] = lines(events, "Shutdown drain")
        self.assertIn("0 answered 503, 0 event streams ended, 1 interrupted", summary)

    def test_the_stop_waits_until_the_answers_are_out(self) -> None:
        server, ledger = serve()
        client = server.get("/?delay=30")
        # The client's side has not taken the bytes yet: still connected.
        client.transport.loseConnection = lambda: None  # type: ignore[method-assign]
        stopped = self.drain(ledger, server)
        server.advance(1.0)
        self.assertNoResult(stopped)
        client.close()
        server.advance(0.02)
        self.successResultOf(stopped)

    def test_a_stuck_connection_does_not_hold_the_stop_for_ever(self) -> None:
        server, ledger = serve()
        client = server.get("/?delay=30")
        client.transport.loseConnection = lambda: None  # type: ignore[method-assign]
        stopped = self.drain(ledger, server)
        server.advance(1.0)
        for _ in range(101):
            server.advance(0.02)
        self.successResultOf(stopped)
