"""
The live demo page (C{/demo}) and the stream that feeds it (C{/outcomes}),
through the closedemo site in memory on a L{Clock}.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
from html.parser import HTMLParser
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from twisted_close import Ending, HostCheck, Ledger, Limits, Outcome, Rejection
from twisted_close._ledger import Totals
from twisted_close.closedemo.outcomes import OutcomeStream, OutcomeStreamResource
from twisted_close.closedemo.page import DemoPage, page_html
from twisted_close.closedemo.site import DemoRoot
from twisted_close.testing import Connection, InMemoryServer, dechunk, sse_blocks

from .helpers import ZERO, channel, delayed_server, demo_server


def outcomes_of(server: InMemoryServer) -> OutcomeStreamResource:
    check = server.site.resource
    assert isinstance(check, HostCheck)
    root = check.resource
    assert isinstance(root, DemoRoot)
    return root.outcomes


def observers(ledger: Ledger) -> int:
    return len(ledger._observers)


def blocks(client: Connection) -> list[list[str]]:
    """
    The complete events and comments so far, each as its lines.
    """
    assert client.head, client.transport.value()
    return client.sse_blocks


def events(client: Connection) -> list[tuple[str, Any]]:
    """
    The events so far as (type, JSON data); comments are left out.
    """
    found = []
    for lines in blocks(client):
        if lines[0].startswith(":"):
            continue
        fields = dict(line.split(": ", 1) for line in lines)
        found.append((fields["event"], json.loads(fields["data"])))
    return found


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.labels: dict[str, str] = {}
        self.buttons: dict[str, str] = {}
        self._label: str | None = None
        self._button: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "label":
            self._label = attributes.get("for") or ""
            self.labels[self._label] = ""
        if tag == "button":
            self._button = attributes.get("id") or ""
            self.buttons[self._button] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self._label = None
        if tag == "button":
            self._button = None

    def handle_data(self, data: str) -> None:
        if self._label is not None:
            self.labels[self._label] += data
        if self._button is not None:
            self.buttons[self._button] += data


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    page.close()
    return page


class DemoPageTests(SynchronousTestCase):
    def test_the_page_at_once_and_not_counted(self) -> None:
        server, ledger = demo_server()
        response = server.get("/demo").response
        assert response is not None
        self.assertEqual(response.status, 200)
        self.assertEqual(response.header("content-type"), "text/html; charset=utf-8")
        self.assertEqual(response.header("content-length"), str(len(response.body)))
        self.assertEqual(response.header("cache-control"), "no-cache")
        self.assertTrue(response.body.startswith(b"<!doctype html>"))
        self.assertIn(b'<meta name="viewport"', response.body)
        self.assertEqual(ledger.snapshot(), ZERO)
        slash = server.get("/demo/").response
        assert slash is not None
        self.assertEqual(slash.status, 200)

    def test_nothing_is_fetched_from_elsewhere(self) -> None:
        server, _ = demo_server()
        response = server.get("/demo").response
        assert response is not None
        html = response.body.decode("utf-8")
        # No absolute URL anywhere: no CDN, no font, no script from elsewhere.
        self.assertNotIn("http://", html)
        self.assertNotIn("https://", html)
        for tag, attributes in parse(html).tags:
            for name in ("src", "href", "action", "srcset"):
                value = attributes.get(name)
                if value is not None:
                    self.assertFalse(
                        re.match(r"\s*(//|[a-z][a-z0-9+.-]*:)(?!,)", value)
                        and not value.startswith("data:"),
                        f"<{tag} {name}={value!r}>",
                    )
        self.assertNotRegex(html, r"@import|url\(")
        self.assertEqual([t for t, _ in parse(html).tags if t == "script"], ["script"])
        self.assertEqual([t for t, a in parse(html).tags if a.get("src")], [])

    def test_the_browser_enforces_it(self) -> None:
        server, _ = demo_server()
        response = server.get("/demo").response
        assert response is not None
        policy = response.header("content-security-policy")
        assert policy is not None
        directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
        self.assertEqual(directives["default-src"], "'none'")
        self.assertEqual(directives["connect-src"], "'self' http://*.localhost:*")
        self.assertEqual(directives["frame-ancestors"], "'none'")
        html = response.body.decode("utf-8")
        for kind in ("script", "style"):
            [inline] = re.findall(rf"<{kind}>(.*?)</{kind}>", html, re.DOTALL)
            digest = base64.b64encode(hashlib.sha256(inline.encode()).digest())
            self.assertEqual(directives[f"{kind}-src"], f"'sha256-{digest.decode()}'")
        # No inline handlers or style attributes: the policy would block them.
        for _, attributes in parse(html).tags:
            self.assertNotIn("style", attributes)
            self.assertEqual([a for a in attributes if a.startswith("on")], [])

    def test_controls_are_labelled_buttons_and_inputs(self) -> None:
        page = parse(page_html())
        inputs = [a for t, a in page.tags if t in ("input", "select", "textarea")]
        self.assertEqual(
            [a["id"] for a in inputs if a.get("type") != "hidden"],
            ["delay", "only-interrupted"],
        )
        for attributes in inputs:
            control = attributes["id"]
            assert control is not None
            self.assertIn(control, page.labels)
            self.assertTrue(page.labels[control].strip())
        self.assertEqual(
            {i: " ".join(t.split()) for i, t in page.buttons.items()},
            {
                "start": "Start a request",
                "burst": "Start 50, abort a random half",
                "abort-all": "Abort all mine",
            },
        )
        for tag, attributes in page.tags:
            if tag == "button":
                self.assertEqual(attributes.get("type"), "button")
            # Nothing taken out of the tab order, nothing forced into it.
            self.assertNotIn("tabindex", attributes)

    def test_server_data_is_set_as_text(self) -> None:
        # Paths come from clients: the page never parses server data as HTML.
        html = page_html()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"):
            self.assertNotIn(sink, html)
        self.assertIn("textContent", html)

    def test_the_servers_delays_fill_the_page(self) -> None:
        server, _ = demo_server(delay=2.5)
        response = server.get("/demo").response
        assert response is not None
        html = response.body.decode("utf-8")
        self.assertIn('value="2.5" data-default="2.5"', html)
        self.assertIn("From 0 to 60 s.", html)
        self.assertNotIn("{{", html)
        self.assertIn("From 0 to 7.5 s.", DemoPage(1, 7.5).body.decode())

    def test_head(self) -> None:
        server, _ = demo_server()
        response = server.get("/demo", "HEAD").response
        assert response is not None
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, b"")
        self.assertEqual(response.header("content-type"), "text/html; charset=utf-8")
        self.assertEqual(
            response.header("content-length"), str(len(page_html(2.0, 60.0).encode()))
        )

    def test_other_methods_get_405(self) -> None:
        server, ledger = demo_server()
        for method in ("POST", "PUT", "DELETE"):
            response = server.get("/demo", method).response
            assert response is not None
            self.assertEqual(response.status, 405)
            self.assertEqual(response.header("allow"), "GET, HEAD")
        self.assertEqual(ledger.snapshot(), ZERO)

    def test_paths_below_are_404(self) -> None:
        server, _ = demo_server()
        response = server.get("/demo/x").response
        assert response is not None
        self.assertEqual(response.status, 404)


class OutcomeStreamTests(SynchronousTestCase):
    def test_counters_on_connect(self) -> None:
        server, ledger = demo_server()
        server.get("/?delay=abc")
        server.get("/slow")
        client = server.get("/outcomes")
        head = client.transport.value().partition(b"\r\n\r\n")[0].lower()
        self.assertIn(b"\r\ncontent-type: text/event-stream; charset=utf-8", head)
        self.assertIn(b"\r\ncache-control: no-cache", head)
        [first] = blocks(client)
        self.assertEqual(first[:2], ["event: counters", "retry: 1000"])
        self.assertEqual(
            events(client), [("counters", {**ZERO, "pending": 1, "rejected": 1})]
        )
        self.assertEqual(ledger.snapshot(), {**ZERO, "pending": 1, "rejected": 1})

    def test_an_outcome_when_a_request_is_interrupted(self) -> None:
        server, _ = demo_server(delay=2)
        client = server.get("/outcomes")
        leaving = server.connect(port=53111).request("/slow/one")
        server.advance(0.5)
        client.transport.clear()  # only what comes next
        leaving.close()
        server.advance(0)
        [(kind, data)] = events_in(client.transport.value())
        self.assertEqual(kind, "outcomes")
        self.assertEqual(
            data,
            {
                "outcomes": [
                    {
                        "outcome": {
                            "method": "GET",
                            "path": "/slow/one",
                            "client": "127.0.0.1:53111",
                            "elapsed": 0.5,
                            "ending": "client_closed",
                            "reason": "client closed the connection",
                            "cancelled": 1,
                            "detail": "",
                            "phase": "waiting",
                            "delivery": "",
                            "unacknowledged": 0,
                        },
                        "counter": "interrupted",
                    }
                ],
                "counters": {**ZERO, "interrupted": 1},
            },
        )

    def test_an_outcome_when_a_request_completes(self) -> None:
        server, _ = demo_server(delay=2)
        client = server.get("/outcomes")
        server.get("/done")
        server.advance(1.9)
        server.advance(0.1)
        kinds = [kind for kind, _ in events(client)]
        # The counters as the request began, then its outcome.
        self.assertEqual(kinds[:2], ["counters", "counters"])
        self.assertEqual(kinds[-1], "outcomes")
        self.assertEqual(events(client)[1][1], {**ZERO, "pending": 1})
        _, data = events(client)[-1]
        [item] = data["outcomes"]
        self.assertEqual(item["counter"], "completed")
        self.assertEqual(item["outcome"]["ending"], "completed")
        self.assertEqual(data["counters"], {**ZERO, "completed": 1})

    def test_server_ended_outcomes_say_so(self) -> None:
        server, ledger = demo_server(delay=2)
        client = server.get("/outcomes")
        server.get("/slow")
        [pending] = ledger.live()
        pending.end_by_server(Ending.SHUTDOWN)
        server.advance(0)
        _, data = events(client)[-1]
        [item] = data["outcomes"]
        self.assertEqual(item["counter"], "server_ended")
        self.assertEqual(item["outcome"]["ending"], "shutdown")

    def test_counters_when_only_the_counters_change(self) -> None:
        # A rejection or a request that begins makes no Outcome: the counters
        # are checked every quarter second and sent when they changed.
        server, _ = demo_server()
        client = server.get("/outcomes")
        server.get("/?delay=-1")
        server.get("/slow")
        self.assertEqual(len(events(client)), 1)
        server.advance(0.25)
        self.assertEqual(
            events(client)[1:], [("counters", {**ZERO, "pending": 1, "rejected": 1})]
        )
        server.advance(0.25)
        server.advance(0.25)
        self.assertEqual(len(events(client)), 2)  # unchanged: nothing sent

    def test_a_heartbeat_when_quiet(self) -> None:
        server, _ = demo_server()
        client = server.get("/outcomes")
        for _ in range(int(14.75 / 0.25)):
            server.advance(0.25)
        self.assertEqual(len(blocks(client)), 1)
        server.advance(0.25)
        self.assertEqual(blocks(client)[1:], [[": heartbeat"]])
        for _ in range(int(15 / 0.25)):
            server.advance(0.25)
        self.assertEqual(blocks(client)[1:], [[": heartbeat"], [": heartbeat"]])

    def test_the_stream_is_not_counted_nor_logged(self) -> None:
        # Closing the page must not show as an interrupted request on it.
        server, ledger = demo_server()
        with capturedLogs() as logged:
            server.get("/outcomes")
            self.assertEqual(ledger.snapshot(), ZERO)
            server.advance(3)
            server.get("/outcomes").close()
            server.connections[0].reset()
            server.advance(1)
        self.assertEqual(ledger.snapshot(), ZERO)
        self.assertEqual([e for e in logged if "outcome" in e], [])

    def test_unsubscribes_when_the_client_leaves(self) -> None:
        server, ledger = demo_server()
        baseline = observers(ledger)
        resource = outcomes_of(server)
        closing, resetting = server.get("/outcomes"), server.get("/outcomes")
        # One observer for all the streams.
        self.assertEqual(observers(ledger), baseline + 1)
        self.assertEqual(len(resource.streams), 2)
        closing.close()
        resetting.reset()
        self.assertEqual(observers(ledger), baseline)
        self.assertEqual(resource.streams, [])
        # Nothing left scheduled for them, nothing more written.
        written = [c.transport.value() for c in (closing, resetting)]
        server.get("/slow").close()
        server.advance(30)
        self.assertEqual([c.transport.value() for c in (closing, resetting)], written)

    def test_unsubscribes_when_the_server_ends_it(self) -> None:
        server, ledger = demo_server()
        baseline = observers(ledger)
        client = server.get("/outcomes")
        self.assertEqual(outcomes_of(server).end_all(), 1)
        self.assertEqual(observers(ledger), baseline)
        self.assertTrue(client.transport.value().endswith(b"0\r\n\r\n"))
        self.assertEqual(ledger.snapshot(), ZERO)

    def test_a_client_already_gone_gets_no_stream(self) -> None:
        clock, ledger = Clock(), Ledger()
        baseline = observers(ledger)
        resource = OutcomeStreamResource(ledger, clock=clock)
        request: Any = DummyRequest([b""])
        request._disconnected = True
        self.assertEqual(resource.render(request), NOT_DONE_YET)
        self.assertEqual(resource.streams, [])
        self.assertEqual(observers(ledger), baseline)
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual(request.written, [])

    def test_head_and_other_methods(self) -> None:
        server, ledger = demo_server()
        baseline = observers(ledger)
        head = server.get("/outcomes", "HEAD").response
        assert head is not None
        self.assertEqual(head.status, 200)
        self.assertEqual(
            head.header("content-type"), "text/event-stream; charset=utf-8"
        )
        self.assertEqual(head.body, b"")
        post = server.get("/outcomes", "POST").response
        assert post is not None
        self.assertEqual(post.status, 405)
        self.assertEqual(post.header("allow"), "GET, HEAD")
        self.assertEqual(observers(ledger), baseline)
        self.assertEqual(outcomes_of(server).streams, [])

    def test_too_many_streams_get_503_counted(self) -> None:
        clock, ledger = Clock(), Ledger(limits=Limits(max_streams=2))
        resource = OutcomeStreamResource(ledger, clock=clock)
        server = InMemoryServer(resource, clock=clock)
        server.get("/"), server.get("/")
        refused = server.get("/").response
        assert refused is not None
        self.assertEqual(refused.status, 503)
        self.assertEqual(refused.header("retry-after"), "5")
        self.assertEqual(refused.body, b"too many streams; retry in 5 s\n")
        self.assertEqual(ledger.snapshot(), {**ZERO, "rejected": 1})
        self.assertEqual(ledger.rejections[Rejection.TOO_MANY_STREAMS], 1)
        self.assertEqual(ledger.limits.streams, 2)

    def test_counters_come_from_what_stats_shows(self) -> None:
        # With several workers, /stats shows their shared totals.
        class Shared:
            def totals(self) -> Any:
                return Totals(completed=41)

        clock, ledger = Clock(), Ledger()
        resource = OutcomeStreamResource(ledger, counts=Shared(), clock=clock)
        client = InMemoryServer(resource, clock=clock).get("/")
        self.assertEqual(events(client), [("counters", {**ZERO, "completed": 41})])

    def test_a_failing_write_ends_only_that_stream(self) -> None:
        server, ledger = demo_server(delay=1)
        baseline = observers(ledger)
        client = server.get("/outcomes")
        [stream] = outcomes_of(server).streams

        write = stream.request.write

        def broken(data: bytes) -> None:
            if data.startswith(b"event: outcome"):
                raise OSError("broken")
            write(data)

        stream.request.write = broken  # type: ignore[method-assign]
        server.get("/slow").close()
        server.advance(0)
        # The request that ended is counted all the same, and the stream
        # ended cleanly.
        self.assertEqual(ledger.snapshot(), {**ZERO, "interrupted": 1})
        self.assertTrue(stream.closed)
        self.assertEqual(observers(ledger), baseline)
        self.assertTrue(client.transport.value().endswith(b"0\r\n\r\n"))
        [failure] = self.flushLoggedErrors(OSError)
        self.assertEqual(str(failure.value), "broken")


def events_in(data: bytes) -> list[tuple[str, Any]]:
    """
    The events in raw chunked bytes that hold whole chunks only.
    """
    found = []
    for block in sse_blocks(dechunk(data)[0]):
        fields = dict(line.split(": ", 1) for line in block)
        found.append((fields["event"], json.loads(fields["data"])))
    return found


class BackpressureTests(SynchronousTestCase):
    """
    A page that does not read: nothing is written or kept for it but a
    count; it is told how many outcomes it missed, and the counters are
    exact again as soon as it reads.
    """

    def test_outcomes_are_dropped_and_counted_while_paused(self) -> None:
        server, ledger = demo_server(delay=1)
        client = server.get("/outcomes")
        [stream] = outcomes_of(server).streams
        channel(client).pauseProducing()
        self.assertTrue(stream.paused)
        written = client.transport.value()
        for _ in range(100):
            server.get("/gone").close()
        server.get("/?delay=x")
        server.get("/done")
        server.advance(1)
        for _ in range(40):
            server.advance(0.25)
        # Nothing written (no event, no counters, no heartbeat), nothing
        # scheduled, and only a count kept.
        self.assertEqual(client.transport.value(), written)
        self.assertEqual(stream.dropped, 101)
        self.assertEqual(stream.sent, 0)
        self.assertEqual(self.stream_calls(server), [])

        channel(client).resumeProducing()
        server.advance(0)
        self.assertEqual(
            events(client)[1:],
            [
                ("dropped", {"dropped": 101}),
                (
                    "counters",
                    {**ZERO, "completed": 1, "interrupted": 100, "rejected": 1},
                ),
            ],
        )
        self.assertEqual(ledger.snapshot()["interrupted"], 100)
        # Then outcomes flow again, and the count is not repeated.
        server.get("/again").close()
        server.advance(1)
        self.assertEqual([k for k, _ in events(client)[3:]], ["outcomes"])
        self.assertEqual((stream.sent, stream.dropped), (1, 101))

    def test_a_stream_that_begins_paused_waits_for_its_counters(self) -> None:
        server, ledger = demo_server()
        client = server.connect()
        channel(client).pauseProducing()
        client.request("/outcomes")
        [stream] = outcomes_of(server).streams
        self.assertTrue(stream.paused)
        # The headers are out, so that the browser knows the stream is open.
        self.assertIn(b"text/event-stream", client.transport.value())
        self.assertEqual(events(client), [])
        server.get("/gone").close()
        server.advance(0)
        channel(client).resumeProducing()
        server.advance(0)
        self.assertEqual(
            events(client),
            [("dropped", {"dropped": 1}), ("counters", {**ZERO, "interrupted": 1})],
        )
        self.assertEqual(blocks(client)[1][:2], ["event: counters", "retry: 1000"])
        del ledger

    def test_the_client_leaves_while_paused(self) -> None:
        server, ledger = demo_server()
        baseline = observers(ledger)
        client = server.get("/outcomes")
        channel(client).pauseProducing()
        server.get("/gone").close()
        client.reset()
        self.assertEqual(observers(ledger), baseline)
        self.assertEqual(self.stream_calls(server), [])
        self.assertEqual(ledger.snapshot(), {**ZERO, "interrupted": 1})

    def test_a_stream_paused_again_before_its_catch_up_gets_nothing(self) -> None:
        server, _ = demo_server()
        client = server.get("/outcomes")
        channel(client).pauseProducing()
        server.get("/gone").close()
        channel(client).resumeProducing()
        # Paused again before the catch-up call ran: it must not run.
        channel(client).pauseProducing()
        written = client.transport.value()
        server.advance(0)
        self.assertEqual(client.transport.value(), written)
        self.assertEqual(self.stream_calls(server), [])

    def test_no_subscriber_no_timer(self) -> None:
        server, _ = demo_server()
        resource = outcomes_of(server)
        client = server.get("/outcomes")
        server.get("/gone").close()
        self.assertNotEqual(self.resource_calls(server, resource), [])
        client.reset()
        self.assertEqual(self.resource_calls(server, resource), [])

    @staticmethod
    def resource_calls(
        server: InMemoryServer, resource: OutcomeStreamResource
    ) -> list[str]:
        return [
            getattr(call.func, "__name__", "?")  # type: ignore[attr-defined]
            for call in server.clock.getDelayedCalls()
            if getattr(getattr(call, "func", None), "__self__", None) is resource
        ]

    @staticmethod
    def stream_calls(server: InMemoryServer) -> list[str]:
        calls = []
        for call in server.clock.getDelayedCalls():
            func = getattr(call, "func", None)
            if isinstance(getattr(func, "__self__", None), OutcomeStream):
                calls.append(getattr(func, "__name__", "?"))
        return calls


class LedgerObserverTests(SynchronousTestCase):
    def test_unobserve(self) -> None:
        server, resource = delayed_server()
        ledger = resource.ledger
        seen: list[Outcome] = []
        baseline = observers(ledger)
        ledger.observe(seen.append)
        ledger.unobserve(seen.append)
        ledger.unobserve(seen.append)  # no longer observing: nothing
        self.assertEqual(observers(ledger), baseline)
        server.get("/").close()
        self.assertEqual(seen, [])
        self.assertEqual(ledger.interrupted, 1)

    def test_unobserve_while_outcomes_are_handed_out(self) -> None:
        server, resource = delayed_server()
        ledger = resource.ledger
        seen: list[str] = []

        def first(outcome: Outcome) -> None:
            seen.append("first")
            ledger.unobserve(first)

        ledger.observe(first)
        ledger.observe(lambda outcome: seen.append("second"))
        server.get("/").close()
        server.get("/").close()
        # The second observer is not skipped when the first leaves.
        self.assertEqual(seen, ["first", "second", "second"])


class FanOutTests(SynchronousTestCase):
    """
    The cost of the outcome stream does not grow with the request rate
    times the subscribers.
    """

    def outcomes_events(self, client: Connection) -> list[Any]:
        return [data for kind, data in events(client) if kind == "outcomes"]

    def json_calls(self, subscribers: int) -> tuple[int, list[bytes]]:
        server, _ = demo_server(delay=5)
        clients = [server.get("/outcomes") for _ in range(subscribers)]
        for client in clients:
            client.transport.clear()
        from twisted_close.closedemo import outcomes

        calls = []
        real = outcomes._json

        def counting(value: object) -> str:
            calls.append(value)
            return real(value)

        self.patch(outcomes, "_json", counting)
        for n in range(30):
            server.get(f"/{n}").close()
            server.advance(0.01)
        server.advance(1)
        return len(calls), [c.transport.value() for c in clients]

    def test_each_outcome_is_serialised_once(self) -> None:
        one, [alone] = self.json_calls(1)
        many, written = self.json_calls(40)
        self.assertEqual(one, many)
        # 30 outcomes, a few batches' counters.
        self.assertLess(many, 30 + 10)
        # Every subscriber got the same bytes.
        self.assertEqual(len(set(written)), 1)
        self.assertEqual(len(alone), len(written[0]))

    def test_at_most_one_event_per_100_ms_with_every_outcome(self) -> None:
        server, _ = demo_server(delay=5)
        client = server.get("/outcomes")
        seen: list[tuple[float, int]] = []
        for n in range(30):
            server.get(f"/{n}").close()
            server.advance(0.01)
            found = self.outcomes_events(client)
            if len(found) > len(seen):
                seen.append((server.clock.seconds(), len(found[-1]["outcomes"])))
        server.advance(0.1)
        found = self.outcomes_events(client)
        if len(found) > len(seen):
            seen.append((server.clock.seconds(), len(found[-1]["outcomes"])))
        paths = [i["outcome"]["path"] for e in found for i in e["outcomes"]]
        self.assertEqual(paths, [f"/{n}" for n in range(30)])
        self.assertLessEqual(len(found), 4)
        times = [t for t, _ in seen]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        self.assertTrue(all(gap >= 0.1 - 1e-9 for gap in gaps), times)
        self.assertEqual(found[-1]["counters"], {**ZERO, "interrupted": 30})

    def test_a_subscriber_that_reads_nothing_is_dropped_and_counted(self) -> None:
        server, ledger = demo_server()
        stalled = server.connect(port=50111).request("/outcomes")
        reading = server.get("/outcomes")
        channel(stalled).pauseProducing()
        # --heartbeat (15 s) x 4: not yet at 59.75 s.
        for _ in range(239):
            server.advance(0.25)
        self.assertFalse(stalled.closed_by_server)
        with capturedLogs() as logged:
            server.advance(0.25)
        self.assertTrue(stalled.transport.disconnecting)
        self.assertEqual(len(outcomes_of(server).streams), 1)
        self.assertEqual(ledger.server_endings, {Ending.STALLED: 1})
        self.assertEqual(ledger.snapshot(), {**ZERO, "server_ended": 1})
        [line] = [formatEvent(e) for e in logged if "outcome" in e]
        self.assertEqual(
            line,
            "Ended by the server: GET /outcomes from 127.0.0.1:50111 after 60.00 s "
            "while answering (dropped: the client read nothing; read nothing for 60 s; "
            "0 outcomes sent)",
        )
        # The reader is told, like of any outcome.
        server.advance(0.1)
        [last] = self.outcomes_events(reading)
        self.assertEqual(last["outcomes"][0]["outcome"]["ending"], "stalled")
        self.assertFalse(reading.closed_by_server)

    def test_a_slow_reader_is_not_dropped(self) -> None:
        server, ledger = demo_server()
        client = server.get("/outcomes")
        for _ in range(3):
            channel(client).pauseProducing()
            server.advance(50)
            channel(client).resumeProducing()
            server.advance(1)
        self.assertFalse(client.closed_by_server)
        self.assertEqual(ledger.server_ended, 0)

    def test_no_heartbeat_no_drop(self) -> None:
        clock = Clock()
        ledger = Ledger(clock)
        resource = OutcomeStreamResource(ledger, clock=clock, heartbeat=None)
        server = InMemoryServer(resource, clock=clock)
        client = server.get("/")
        channel(client).pauseProducing()
        server.advance(3600)
        self.assertFalse(client.closed_by_server)


def hold_unsent(client: Connection, n: int) -> None:
    """
    Make C{client}'s transport say it holds C{n} bytes unsent, as Twisted's
    C{FileDescriptor} does (C{dataBuffer} from C{offset}, C{_tempDataLen}).
    """
    untyped: Any = client.transport
    untyped.dataBuffer, untyped.offset, untyped._tempDataLen = b"x" * n, 0, 0


class UnsentBoundTests(SynchronousTestCase):
    def test_a_subscriber_that_would_pass_the_bound_is_dropped_and_counted(
        self,
    ) -> None:
        server, ledger = demo_server(delay=5, max_subscriber_buffer=1000)
        stuck = server.connect(port=50112).request("/outcomes")
        reading = server.get("/outcomes")
        hold_unsent(stuck, 900)  # unpaused, yet holding: the next batch passes
        server.get("/gone").close()
        with capturedLogs() as logged:
            server.advance(1)
        self.assertTrue(stuck.transport.disconnecting)
        self.assertEqual(outcomes_of(server).dropped_unsent, 1)
        self.assertEqual(ledger.server_endings, {Ending.STALLED: 1})
        self.assertEqual(ledger.snapshot()["server_ended"], 1)
        [line] = [
            formatEvent(e) for e in logged if "outcome" in e and "outcomes" in e["path"]
        ]
        self.assertIn("900 bytes unsent, over 1000; 0 outcomes sent", line)
        self.assertFalse(reading.closed_by_server)
        self.assertEqual(len(outcomes_of(server).streams), 1)

    def test_one_large_batch_to_an_empty_buffer_is_written(self) -> None:
        server, ledger = demo_server(delay=5, max_subscriber_buffer=1024)
        client = server.get("/outcomes")
        for n in range(20):
            server.get(f"/{n}-" + "y" * 200).close()
        server.advance(1)
        [data] = [d for kind, d in events(client) if kind == "outcomes"]
        self.assertEqual(len(data["outcomes"]), 20)
        self.assertFalse(client.closed_by_server)
        self.assertEqual(ledger.server_ended, 0)

    def test_outcomes_past_64_kib_go_out_at_once(self) -> None:
        server, _ = demo_server(delay=5)
        client = server.get("/outcomes")
        server.advance(1)
        server.get("/first").close()
        server.advance(0)  # a batch went out: the next waits 0.1 s...
        for n in range(400):
            server.get(f"/{n}-" + "z" * 250).close()
        server.advance(0)  # ...unless 64 KiB wait: then not
        found = [d for kind, d in events(client) if kind == "outcomes"][1:]
        # In events of at most about 64 KiB each, every outcome in order.
        self.assertGreater(len(found), 1)
        sizes = [len(json.dumps(d)) for d in found]
        # (json.dumps adds a space after each separator.)
        self.assertTrue(all(size < 72 * 1024 for size in sizes), sizes)
        paths = [i["outcome"]["path"] for d in found for i in d["outcomes"]]
        self.assertEqual(paths, [f"/{n}-" + "z" * 250 for n in range(400)])

    def test_a_long_path_is_cut_in_the_stream(self) -> None:
        server, _ = demo_server(delay=5)
        client = server.get("/outcomes")
        server.get("/" + "q" * 16000).close()
        server.advance(1)
        [data] = [d for kind, d in events(client) if kind == "outcomes"]
        path = data["outcomes"][0]["outcome"]["path"]
        self.assertEqual(path, "/" + "q" * 255 + "...[16001-bytes]")


class OutcomeJsonTests(SynchronousTestCase):
    def test_the_hand_made_json_is_the_records(self) -> None:
        from twisted_close.closedemo.outcomes import _counter, _outcome_json

        for outcome in (
            Outcome("GET", '/a b"\\\n\u2028é', "[::1]:5", 1e-05, Ending.CLIENT_RESET),
            Outcome("POST", "/", "1.2.3.4:5", 12.5, Ending.STALLED, 3, 'x "y"'),
            Outcome("GET", "/", "1.2.3.4:5", 0.0, Ending.COMPLETED),
        ):
            self.assertEqual(
                json.loads(_outcome_json(outcome)),
                {"outcome": outcome.as_dict(), "counter": _counter(outcome)},
            )
