"""
Operating it: the graceful drain, the pending limit, the idle timeout and
the rate-limited log, on a Clock through real channels in memory.
"""

from __future__ import annotations

from collections.abc import Sequence

from twisted.internet.defer import Deferred
from twisted.logger import LogEvent, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from twisted_close import Ending, GracefulDrain, Ledger, Rejection
from twisted_close.testing import Connection, InMemoryServer

from .helpers import demo_server, our_calls


def serve(
    *, max_pending: int | None = None, idle_timeout: float | None = 60.0
) -> tuple[InMemoryServer, Ledger]:
    return demo_server(2, tick=0.5, max_pending=max_pending, idle_timeout=idle_timeout)


def lines(events: Sequence[LogEvent], prefix: str) -> list[str]:
    return [t for e in events if (t := formatEvent(e)).startswith(prefix)]


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
        self.assertTrue(line.endswith("after 1.00 s (server shutting down)"), line)

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


class LimitTests(SynchronousTestCase):
    def test_past_max_pending_requests_get_503_at_once(self) -> None:
        server, ledger = serve(max_pending=3)
        held = [server.get(f"/{n}") for n in range(3)]
        refused = server.get("/4").response
        assert refused is not None
        self.assertEqual(refused.status, 503)
        self.assertEqual(refused.header("retry-after"), "1")
        self.assertEqual(refused.body, b"server overloaded; retry in 1 s\n")
        self.assertEqual(ledger.snapshot()["rejected"], 1)
        self.assertEqual(ledger.rejections[Rejection.OVERLOADED], 1)
        held[0].close()
        server.get("/5")
        self.assertEqual(ledger.pending, 3)

    def test_streams_are_not_pending_work(self) -> None:
        # Twenty open streams take none of the three pending answers.
        server, ledger = serve(max_pending=3)
        streams = [
            server.connect(f"127.0.0.{n % 5 + 1}").request("/events") for n in range(20)
        ]
        held = [server.get(f"/{n}") for n in range(3)]
        self.assertEqual(
            [c.transport.value()[:12] for c in streams], [b"HTTP/1.1 200"] * 20
        )
        self.assertEqual(held[0].response, None)
        refused = server.get("/4").response
        assert refused is not None
        self.assertEqual(refused.status, 503)
        # Still pending in /stats: open streams and answers alike.
        self.assertEqual(ledger.pending, 23)
        self.assertEqual(ledger.rejected, 1)
        server.advance(2)
        self.assertEqual(ledger.completed, 3)
        self.assertEqual(server.get("/5").response, None)

    def test_a_flood_holds_no_state_for_refused_requests(self) -> None:
        server, ledger = serve(max_pending=10)
        clients = [server.get(f"/{n}") for n in range(2000)]
        self.assertEqual(ledger.pending, 10)
        self.assertEqual(len(our_calls(server)), 10)
        self.assertEqual(ledger.rejected, 1990)
        for client in clients:
            client.close()
        server.advance(2)
        self.assertEqual(ledger.snapshot()["pending"], 0)


class IdleTimeoutTests(SynchronousTestCase):
    def test_a_pending_answer_outlives_the_idle_timeout(self) -> None:
        server, _ledger = serve(idle_timeout=1)
        client = server.get("/?delay=5")
        server.advance(5)
        assert client.response is not None
        self.assertEqual(client.response.status, 200)

    def test_a_stream_outlives_the_idle_timeout(self) -> None:
        server, _ledger = serve(idle_timeout=1)
        client = server.get("/events")
        for _ in range(10):
            server.advance(0.5)
        self.assertFalse(client.closed_by_server)
        self.assertEqual(client.transport.value().count(b"data: "), 10)

    def test_an_idle_connection_is_closed_and_nobody_is_blamed(self) -> None:
        server, ledger = serve(idle_timeout=1)
        client = server.get("/?delay=0")
        server.advance(0)
        with capturedLogs() as events:
            server.advance(1)
        self.assertTrue(client.closed_by_server)
        self.assertEqual(lines(events, "Connection interrupted"), [])
        self.assertEqual(ledger.snapshot()["interrupted"], 0)

    def test_a_connection_the_server_closes_is_not_the_clients_doing(self) -> None:
        server, ledger = serve()
        client = server.get("/?delay=30")
        # The server begins to close (as a timeout or an error would); the
        # connection then ends cleanly.
        client.transport.loseConnection()
        client.close()
        self.assertEqual(ledger.server_endings[Ending.SERVER_CLOSED], 1)
        self.assertEqual(ledger.interrupted, 0)


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
