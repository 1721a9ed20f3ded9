"""
L{DelayedResource} through a real C{Site}/C{HTTPChannel} in memory.
"""

from __future__ import annotations

from urllib.parse import quote

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from twisted_close import Ending, Outcome
from twisted_close.testing import outcome_events

from .helpers import delayed_server, our_calls

interruptions = outcome_events


class CompletionTests(SynchronousTestCase):
    def test_answers_after_the_delay(self) -> None:
        server, resource = delayed_server(delay=2)
        client = server.get("/slow")
        server.advance(1.9)
        self.assertIsNone(client.response)
        self.assertEqual(resource.ledger.pending, 1)
        server.advance(0.1)
        response = client.response
        assert response is not None
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, b"hello")
        self.assertEqual(response.header("content-type"), "text/html; charset=utf-8")
        self.assertEqual(response.header("content-length"), "5")
        self.assertEqual(
            resource.ledger.snapshot(),
            {
                "pending": 0,
                "completed": 1,
                "interrupted": 0,
                "rejected": 0,
                "server_ended": 0,
            },
        )

    def test_body_and_delay_are_parameters(self) -> None:
        server, _ = delayed_server(delay=0.5, body="<p>bonjour \u00e9</p>")
        client = server.get("/")
        server.advance(0.5)
        assert client.response is not None
        self.assertEqual(client.response.body, "<p>bonjour \u00e9</p>".encode())

    def test_query_delay_overrides_the_default(self) -> None:
        server, _ = delayed_server(delay=10)
        client = server.get("/?delay=0.25")
        self.assertEqual(our_calls(server), [0.25])
        server.advance(0.25)
        self.assertIsNotNone(client.response)

    def test_delay_zero_still_answers_through_the_clock(self) -> None:
        server, _ = delayed_server()
        client = server.get("/?delay=0")
        self.assertIsNone(client.response)
        server.advance(0)
        self.assertIsNotNone(client.response)

    def test_head_has_headers_and_no_body(self) -> None:
        server, resource = delayed_server(delay=1)
        client = server.connect().request("/", "HEAD").request("/?delay=0", "GET")
        server.advance(1)
        head, get = client.responses
        self.assertEqual(head.status, 200)
        self.assertEqual(head.header("content-length"), "5")
        self.assertEqual(head.body, b"")
        # The next response on the connection starts right after the head:
        # no body bytes of the HEAD answer leaked onto the wire.
        self.assertEqual(get.body, b"hello")
        self.assertEqual(resource.ledger.completed, 2)

    def test_a_completed_request_is_not_reported(self) -> None:
        server, resource = delayed_server(delay=1)
        with capturedLogs() as events:
            client = server.get("/")
            server.advance(1)
            client.close()
        self.assertEqual(interruptions(events), [])
        self.assertEqual(resource.ledger.interrupted, 0)
        self.assertEqual(resource.ledger.completed, 1)


class InterruptionTests(SynchronousTestCase):
    def test_clean_close_cancels_and_reports(self) -> None:
        server, resource = delayed_server(delay=2)
        with capturedLogs() as events:
            client = server.connect(port=53122).request("/slow")
            server.advance(0.4)
            client.close()
        self.assertEqual(our_calls(server), [])
        [event] = interruptions(events)
        self.assertEqual(
            formatEvent(event),
            "Connection interrupted: GET /slow from 127.0.0.1:53122 "
            "after 0.40 s while waiting (client closed the connection)",
        )
        self.assertEqual(event["method"], "GET")
        self.assertEqual(event["path"], "/slow")
        self.assertEqual(event["client"], "127.0.0.1:53122")
        self.assertAlmostEqual(event["elapsed"], 0.4)
        self.assertEqual(event["cancelled"], 1)
        outcome = event["outcome"]
        assert isinstance(outcome, Outcome)
        self.assertIs(outcome.ending, Ending.CLIENT_CLOSED)
        self.assertEqual(
            resource.ledger.snapshot(),
            {
                "pending": 0,
                "completed": 0,
                "interrupted": 1,
                "rejected": 0,
                "server_ended": 0,
            },
        )

    def test_reset_is_told_apart_from_a_clean_close(self) -> None:
        server, resource = delayed_server(delay=2)
        with capturedLogs() as events:
            server.get("/a").close()
            server.get("/b").reset()
        closed, reset = (e["outcome"] for e in interruptions(events))
        self.assertIs(closed.ending, Ending.CLIENT_CLOSED)
        self.assertIs(reset.ending, Ending.CLIENT_RESET)
        self.assertIn("reset", formatEvent(interruptions(events)[1]))
        self.assertNotEqual(closed.reason, reset.reason)
        self.assertEqual(resource.ledger.interruptions[Ending.CLIENT_RESET], 1)
        self.assertEqual(resource.ledger.interruptions[Ending.CLIENT_CLOSED], 1)

    def test_nothing_is_written_after_the_client_left(self) -> None:
        server, _ = delayed_server(delay=2)
        client = server.get("/")
        client.close()
        written = client.transport.value()
        server.advance(10)
        self.assertEqual(client.transport.value(), written)
        self.assertEqual(written, b"")

    def test_interruption_after_finish_is_not_reported(self) -> None:
        server, resource = delayed_server(delay=1)
        client = server.get("/")
        server.advance(1)
        with capturedLogs() as events:
            client.reset()
        self.assertEqual(interruptions(events), [])
        self.assertEqual(resource.ledger.snapshot()["completed"], 1)
        self.assertEqual(resource.ledger.snapshot()["interrupted"], 0)

    def test_odd_paths_stay_on_one_log_line(self) -> None:
        server, _ = delayed_server()
        with capturedLogs() as events:
            # Twisted refuses raw non-ASCII and most controls; DEL gets in.
            server.get(b"/caf%C3%A9/a\x7fb").close()
        [event] = interruptions(events)
        self.assertEqual(event["path"], "/caf%C3%A9/a\\x7fb")
        self.assertNotIn("\n", formatEvent(event))


class BadInputTests(SynchronousTestCase):
    bad = [
        "abc",
        "-1",
        "nan",
        "inf",
        "1e309",
        "1_0",
        "0x10",
        "",
        "61",
        "60.5",
        "1e3",
        " 1",
        "1.",
        ".5",
        "\u0663",
        "1" * 400,
        "\xff",
        "+1",
        "1 ",
    ]

    def test_every_bad_delay_gets_400_with_a_reason_at_once(self) -> None:
        server, resource = delayed_server(max_delay=60)
        for value in self.bad:
            with self.subTest(delay=value):
                client = server.get("/?delay=" + quote(value, safe=""))
                response = client.response
                assert response is not None
                self.assertEqual(response.status, 400)
                self.assertEqual(
                    response.header("content-type"), "text/plain; charset=utf-8"
                )
                self.assertTrue(response.body.startswith(b"delay"), response.body)
                self.assertEqual(response.body.count(b"\n"), 1)
                self.assertLess(len(response.body), 120)
        self.assertEqual(our_calls(server), [])
        self.assertEqual(resource.ledger.rejected, len(self.bad))
        self.assertEqual(resource.ledger.pending, 0)

    def test_repeated_delay_is_refused(self) -> None:
        server, _ = delayed_server()
        response = server.get("/?delay=1&delay=1").response
        assert response is not None
        self.assertEqual(response.status, 400)
        self.assertIn(b"more than once", response.body)

    def test_the_maximum_itself_is_allowed(self) -> None:
        server, _ = delayed_server(max_delay=3)
        server.get("/?delay=3")
        self.assertEqual(our_calls(server), [3.0])

    def test_a_delay_asked_before_is_checked_against_a_lowered_maximum(
        self,
    ) -> None:
        server, resource = delayed_server(max_delay=3)
        server.get("/?delay=3")
        resource.max_delay = 2
        response = server.get("/?delay=3").response
        assert response is not None
        self.assertEqual(response.status, 400)
        self.assertIn(b"over the maximum of 2 s", response.body)
        self.assertEqual(our_calls(server), [3.0])

    def test_other_methods_get_405_with_allow(self) -> None:
        server, resource = delayed_server()
        for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW"]:
            with self.subTest(method=method):
                response = server.get("/", method).response
                assert response is not None
                self.assertEqual(response.status, 405)
                self.assertEqual(response.header("allow"), "GET, HEAD")
                self.assertIn(method.encode(), response.body)
        self.assertEqual(resource.ledger.pending, 0)

    def test_head_with_a_bad_delay_is_400_without_body(self) -> None:
        server, _ = delayed_server()
        client = server.connect().request("/?delay=x", "HEAD")
        [response] = client.responses
        self.assertEqual(response.status, 400)
        self.assertEqual(response.body, b"")

    def test_constructor_refuses_a_delay_over_the_maximum(self) -> None:
        from twisted_close import DelayedResource

        with self.assertRaises(ValueError):
            DelayedResource(delay=5, max_delay=1)


class AccountingTests(SynchronousTestCase):
    @settings(max_examples=60, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.sampled_from(["wait", "close", "reset", "bad"]),
                st.integers(min_value=0, max_value=30),
                st.integers(min_value=0, max_value=30),
            ),
            max_size=25,
        )
    )
    def test_pending_returns_to_zero_after_any_mix(
        self, plan: list[tuple[str, int, int]]
    ) -> None:
        """
        Whatever mix of completions, closes, resets and bad requests, every
        request is counted once and nothing stays pending.
        """
        server, resource = delayed_server(max_delay=3)
        clients = []
        for kind, delay_tenths, leave_tenths in plan:
            delay = "x" if kind == "bad" else f"{delay_tenths / 10:.1f}"
            clients.append((kind, leave_tenths / 10, server.get(f"/?delay={delay}")))
        for step in range(31):
            for kind, leave_at, client in clients:
                if abs(leave_at - step / 10) < 1e-9:
                    if kind == "close":
                        client.close()
                    elif kind == "reset":
                        client.reset()
            server.advance(0.1)
        snap = resource.ledger.snapshot()
        self.assertEqual(snap["pending"], 0)
        self.assertEqual(our_calls(server), [])
        self.assertEqual(
            snap["completed"] + snap["interrupted"] + snap["rejected"], len(plan)
        )
        self.assertEqual(snap["rejected"], sum(k == "bad" for k, _, _ in plan))
