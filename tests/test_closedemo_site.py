"""
The closedemo site: routes, C{/stats} accounting, its pending limit and
idle timeout.
"""

from __future__ import annotations

import json

from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from twisted_close import Ending, Rejection

from .helpers import demo_server, lines, our_calls, serve


class DemoSiteTests(SynchronousTestCase):
    def test_any_path_gets_the_delayed_answer(self) -> None:
        server, _ = demo_server(delay=1)
        clients = [server.get(p) for p in ["/", "/slow", "/a/b/c", "/stats/x"]]
        server.advance(1)
        for client in clients[:3]:
            response = client.response
            assert response is not None
            self.assertEqual((response.status, response.body), (200, b"hello"))

    def test_dot_segments_are_refused_before_routing(self) -> None:
        # Routed by their first segment here, but by a normalising proxy
        # (nginx) to another location: no spelling escapes its limits.
        server, ledger = demo_server()
        for path in ("/events/..", "/events/.", "/outcomes/%2e%2e", "/x/../events"):
            response = server.get(path).response
            assert response is not None, path
            self.assertEqual(response.status, 400, path)
            self.assertEqual(response.body, b"a path with . or .. segments\n")
        self.assertEqual(ledger.snapshot()["pending"], 0)
        # A dot inside a segment is a name like any other.
        server.advance(10)
        self.assertEqual(server.get("/a.b/..c").response, None)

    def test_favicon_is_404_at_once(self) -> None:
        server, ledger = demo_server()
        response = server.get("/favicon.ico").response
        assert response is not None
        self.assertEqual(response.status, 404)
        self.assertEqual(ledger.pending, 0)

    def test_stats_follows_the_ledger(self) -> None:
        server, _ = demo_server(delay=1)

        phases: list[dict[str, int]] = []

        def stats() -> dict[str, int]:
            response = server.get("/stats").response
            assert response is not None
            self.assertEqual(response.header("content-type"), "application/json")
            data = json.loads(response.body)
            phases.append(data.pop("cut_short_by_phase"))
            return dict(data)

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
        # Requests cut short, by the phase they were in: the one that left
        # was still waiting for its answer.
        nothing = {"waiting": 0, "answering": 0, "delivering": 0}
        self.assertEqual(phases, [nothing, nothing, {**nothing, "waiting": 1}])

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


class TrustedProxyTests(SynchronousTestCase):
    def test_each_client_of_a_trusted_proxy_gets_its_own_stream_cap(self) -> None:
        server, ledger = demo_server(
            max_streams_per_client=2, trusted_proxies=["127.0.0.1"]
        )

        def stream(client: str, peer: str = "127.0.0.1") -> bytes:
            connection = server.connect(peer).request(
                "/events", headers={"X-Forwarded-For": f"6.6.6.6, {client}"}
            )
            head: bytes = connection.transport.value()[:12]
            return head

        self.assertEqual(
            [stream("203.0.113.1") for _ in range(2)], [b"HTTP/1.1 200"] * 2
        )
        self.assertEqual(stream("203.0.113.1"), b"HTTP/1.1 429")
        # Another client of the same proxy is not held back by the first.
        self.assertEqual(stream("203.0.113.2"), b"HTTP/1.1 200")
        # From an untrusted peer the header is ignored: that peer's cap.
        self.assertEqual(
            [stream("203.0.113.3", "127.0.0.9") for _ in range(3)],
            [b"HTTP/1.1 200", b"HTTP/1.1 200", b"HTTP/1.1 429"],
        )
        self.assertEqual(ledger.limits.streams_of("203.0.113.1"), 2)
        self.assertEqual(ledger.limits.streams_of("127.0.0.9"), 2)

    def test_the_log_names_the_forwarded_client(self) -> None:
        server, _ = demo_server(trusted_proxies=["127.0.0.1"])
        client = server.connect("127.0.0.1").request(
            "/slow", headers={"X-Forwarded-For": "203.0.113.1"}
        )
        with capturedLogs() as events:
            client.close()
            server.advance(0)
        (line,) = lines(events, "Connection interrupted")
        self.assertIn("GET /slow from 203.0.113.1 after", line)


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
