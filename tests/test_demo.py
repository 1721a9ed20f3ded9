"""
The closedemo site: routes and C{/stats} accounting.
"""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from .helpers import demo_server


class DemoSiteTests(SynchronousTestCase):
    def test_any_path_gets_the_delayed_answer(self) -> None:
        server, _ = demo_server(delay=1)
        clients = [server.get(p) for p in ["/", "/slow", "/a/b/c", "/stats/x"]]
        server.advance(1)
        for client in clients[:3]:
            response = client.response
            assert response is not None
            self.assertEqual((response.status, response.body), (200, b"hello"))

    def test_favicon_is_404_at_once(self) -> None:
        server, ledger = demo_server()
        response = server.get("/favicon.ico").response
        assert response is not None
        self.assertEqual(response.status, 404)
        self.assertEqual(ledger.pending, 0)

    def test_stats_follows_the_ledger(self) -> None:
        server, _ = demo_server(delay=1)

        def stats() -> dict[str, int]:
            response = server.get("/stats").response
            assert response is not None
            self.assertEqual(response.header("content-type"), "application/json")
            data: dict[str, int] = json.loads(response.body)
            return data

        self.assertEqual(
            stats(),
            {
                "pending": 0,
                "completed": 0,
                "interrupted": 0,
                "rejected": 0,
                "server_ended": 0,
            },
        )
        server.get("/1")
        leaving = server.get("/2")
        server.get("/?delay=nope")
        self.assertEqual(
            stats(),
            {
                "pending": 2,
                "completed": 0,
                "interrupted": 0,
                "rejected": 1,
                "server_ended": 0,
            },
        )
        leaving.reset()
        server.advance(1)
        self.assertEqual(
            stats(),
            {
                "pending": 0,
                "completed": 1,
                "interrupted": 1,
                "rejected": 1,
                "server_ended": 0,
            },
        )

    def test_events_stream_and_count_in_the_same_ledger(self) -> None:
        server, ledger = demo_server()
        client = server.get("/events")
        server.advance(1)
        server.advance(1)
        self.assertIn(b"text/event-stream", client.transport.value())
        self.assertEqual(client.transport.value().count(b"\ndata: "), 2)
        self.assertEqual(ledger.pending, 1)
        client.close()
        self.assertEqual((ledger.pending, ledger.interrupted), (0, 1))

    def test_stats_only_reads(self) -> None:
        server, _ = demo_server()
        response = server.get("/stats", "POST").response
        assert response is not None
        self.assertEqual(response.status, 405)
        self.assertEqual(response.header("allow"), "GET, HEAD")
