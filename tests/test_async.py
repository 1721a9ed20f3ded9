"""
L{AsyncResource} through a real C{Site}/C{HTTPChannel} in memory, on a
L{Clock}: no reactor runs.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import CancelledError, Deferred, inlineCallbacks
from twisted.internet.task import Clock, deferLater
from twisted.logger import LogEvent, capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from twisted_close import SAFE_METHODS, AsyncResource, Ending, Ledger, Outcome
from twisted_close.testing import Connection, InMemoryServer, outcome_events

interruptions = outcome_events


def failures(events: Sequence[LogEvent]) -> list[LogEvent]:
    return [e for e in events if "log_failure" in e]


class Work(AsyncResource):
    """
    Every method waits on a L{Deferred} the test fires, and says what
    happened to it in C{events}.
    """

    isLeaf = True

    def __init__(self, clock: Clock, ledger: Ledger) -> None:
        super().__init__(clock=clock, ledger=ledger)
        self.gates: list[Deferred[bytes]] = []
        self.events: list[str] = []
        self.methods_seen: list[bytes] = []

    async def _wait(self, request: IRequest) -> bytes:
        self.methods_seen.append(request.method)
        gate: Deferred[bytes] = Deferred()
        self.gates.append(gate)
        try:
            return await gate
        except CancelledError:
            self.events.append("cancelled")
            raise
        finally:
            self.events.append("finally")

    render_GET = _wait
    render_POST = _wait


class CancelAll(Work):
    cancel_unsafe_methods = True


class CancelDelete(Work):
    cancel_methods = frozenset({b"GET", b"DELETE"})
    render_DELETE = Work._wait


def serve(
    kind: type[Work] = Work,
) -> tuple[InMemoryServer, Work]:
    clock = Clock()
    resource = kind(clock, Ledger())
    return InMemoryServer(resource, clock=clock), resource


def answer(client: Connection) -> tuple[int, bytes, str | None]:
    response = client.response
    assert response is not None
    return response.status, response.body, response.header("content-type")


class CompletionTests(SynchronousTestCase):
    def test_answers_when_the_awaited_deferred_fires(self) -> None:
        server, resource = serve()
        client = server.get("/thing")
        self.assertIsNone(client.response)
        self.assertEqual(resource.ledger.pending, 1)
        [gate] = resource.gates
        gate.callback(b"done")
        response = client.response
        assert response is not None
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, b"done")
        self.assertEqual(response.header("content-length"), "4")
        self.assertEqual(resource.events, ["finally"])
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

    def test_awaits_deferLater_on_the_injected_clock(self) -> None:
        class Later(AsyncResource):
            isLeaf = True

            async def render_GET(self, request: IRequest) -> bytes:
                request.setHeader(b"Content-Type", b"text/plain")
                return await deferLater(self.clock, 2, lambda: b"later")

        clock = Clock()
        resource = Later(clock=clock)
        server = InMemoryServer(resource, clock=clock)
        client = server.get("/")
        server.advance(1.9)
        self.assertIsNone(client.response)
        server.advance(0.1)
        self.assertEqual(answer(client), (200, b"later", "text/plain"))
        self.assertEqual(resource.ledger.completed, 1)
        self.assertEqual(resource.ledger.pending, 0)

    def test_a_coroutine_that_never_waits_answers_at_once(self) -> None:
        class Quick(AsyncResource):
            isLeaf = True

            async def render_GET(self, request: IRequest) -> bytes:
                return b"quick"

        resource = Quick(clock=Clock())
        client = InMemoryServer(resource).get("/")
        self.assertEqual(answer(client)[:2], (200, b"quick"))
        self.assertEqual(resource.ledger.completed, 1)
        self.assertEqual(resource.ledger.pending, 0)

    def test_head_is_answered_by_render_GET_without_a_body(self) -> None:
        server, resource = serve()
        client = server.connect().request("/", "HEAD").request("/", "GET")
        resource.gates[0].callback(b"hello")
        # The GET is pipelined: it is only rendered once the HEAD is done.
        resource.gates[1].callback(b"hello")
        head, get = client.responses
        self.assertEqual(head.status, 200)
        self.assertEqual(head.header("content-length"), "5")
        self.assertEqual(head.body, b"")
        # No body bytes of the HEAD answer leaked onto the wire.
        self.assertEqual(get.body, b"hello")
        self.assertEqual(resource.methods_seen, [b"HEAD", b"GET"])
        self.assertEqual(resource.ledger.completed, 2)
        self.assertEqual(resource.ledger.pending, 0)

    def test_render_HEAD_is_used_when_defined(self) -> None:
        class Both(AsyncResource):
            isLeaf = True

            async def render_GET(self, request: IRequest) -> bytes:
                raise AssertionError("HEAD must not reach render_GET")

            async def render_HEAD(self, request: IRequest) -> bytes:
                return b"12345678"

        client = InMemoryServer(Both(clock=Clock())).connect().request("/", "HEAD")
        [response] = client.responses
        self.assertEqual(response.header("content-length"), "8")
        self.assertEqual(response.body, b"")

    def test_missing_methods_get_405_with_allow(self) -> None:
        server, resource = serve()
        for method in ["PUT", "DELETE", "PATCH", "OPTIONS", "BREW"]:
            with self.subTest(method=method):
                status, body, kind = answer(server.get("/", method))
                self.assertEqual(status, 405)
                self.assertEqual(kind, "text/plain; charset=utf-8")
                self.assertIn(method.encode(), body)
                response = server.connections[-1].response
                assert response is not None
                self.assertEqual(response.header("allow"), "GET, HEAD, POST")
        self.assertEqual(resource.gates, [])
        self.assertEqual(resource.ledger.snapshot()["pending"], 0)
        self.assertEqual(resource.ledger.snapshot()["completed"], 0)

    def test_a_resource_with_no_methods_allows_none(self) -> None:
        class Empty(AsyncResource):
            isLeaf = True

        response = InMemoryServer(Empty(clock=Clock())).get("/").response
        assert response is not None
        self.assertEqual(response.status, 405)
        self.assertEqual(response.header("allow"), "")

    def test_a_coroutine_that_finishes_the_request_is_not_finished_twice(
        self,
    ) -> None:
        class Streams(AsyncResource):
            isLeaf = True

            async def render_GET(self, request: IRequest) -> None:
                request.write(b"one,")
                await deferLater(self.clock, 1, lambda: None)
                request.write(b"two")
                request.finish()

        clock = Clock()
        resource = Streams(clock=clock)
        server = InMemoryServer(resource, clock=clock)
        with capturedLogs() as events:
            client = server.get("/")
            server.advance(1)
        self.assertEqual(answer(client)[:2], (200, b"one,two"))
        self.assertEqual(self.flushWarnings(), [])
        self.assertEqual(failures(events), [])
        self.assertEqual(resource.ledger.completed, 1)
        self.assertEqual(resource.ledger.pending, 0)

    def test_returned_bytes_follow_what_was_written(self) -> None:
        class Partly(AsyncResource):
            isLeaf = True

            async def render_GET(self, request: IRequest) -> bytes:
                request.write(b"head,")
                return b"tail"

        client = InMemoryServer(Partly(clock=Clock())).get("/")
        response = client.response
        assert response is not None
        self.assertEqual(response.body, b"head,tail")
        # Headers went out with the first write: chunked, no Content-Length.
        self.assertIsNone(response.header("content-length"))

    def test_inlineCallbacks_methods_work_too(self) -> None:
        class Old(AsyncResource):
            isLeaf = True
            events: list[str] = []

            @inlineCallbacks
            def render_GET(
                self, request: IRequest
            ) -> Generator[Deferred[object], object, bytes]:
                try:
                    yield deferLater(self.clock, 1, lambda: None)
                finally:
                    self.events.append("finally")
                return b"old style"

        clock = Clock()
        resource = Old(clock=clock)
        server = InMemoryServer(resource, clock=clock)
        done = server.get("/")
        server.advance(1)
        self.assertEqual(answer(done)[:2], (200, b"old style"))
        gone = server.get("/")
        gone.close()
        self.assertEqual(resource.events, ["finally", "finally"])
        self.assertEqual(gone.transport.value(), b"")
        self.assertEqual(resource.ledger.interrupted, 1)
        self.assertEqual(resource.ledger.pending, 0)

    def test_plain_render_methods_are_left_to_twisted(self) -> None:
        class Plain(AsyncResource):
            isLeaf = True

            def render_GET(self, request: IRequest) -> bytes:
                return b"plain"

        resource = Plain(clock=Clock())
        self.assertEqual(answer(InMemoryServer(resource).get("/"))[:2], (200, b"plain"))
        self.assertEqual(resource.ledger.completed, 1)
        self.assertEqual(resource.ledger.pending, 0)


class InterruptionTests(SynchronousTestCase):
    def test_client_close_cancels_the_coroutine_at_its_await(self) -> None:
        server, resource = serve()
        with capturedLogs() as events:
            client = server.connect(port=50123).request("/slow")
            server.advance(0.5)
            self.assertEqual(resource.events, [])
            client.close()
        self.assertEqual(resource.events, ["cancelled", "finally"])
        self.assertEqual(client.transport.value(), b"")
        # The awaited Deferred itself was cancelled; the coroutine consumed it.
        self.assertTrue(resource.gates[0].called)
        [event] = interruptions(events)
        self.assertEqual(failures(events), [])
        self.assertEqual(
            formatEvent(event),
            "Connection interrupted: GET /slow from 127.0.0.1:50123 "
            "after 0.50 s while waiting (client closed the connection)",
        )
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
        self.assertEqual(resource.ledger.interruptions[Ending.CLIENT_CLOSED], 1)

    def test_a_reset_is_reported_as_a_reset(self) -> None:
        server, resource = serve()
        server.get("/").reset()
        self.assertEqual(resource.events, ["cancelled", "finally"])
        self.assertEqual(resource.ledger.interruptions[Ending.CLIENT_RESET], 1)
        self.assertEqual(resource.ledger.pending, 0)

    def test_an_answer_despite_the_cancellation_is_dropped(self) -> None:
        """
        A coroutine may catch C{CancelledError}, clean up with more awaits and
        return: nothing is written, C{finish()} is not called on the dead
        request, nothing is logged as an error.
        """

        class Stubborn(AsyncResource):
            isLeaf = True
            cleanup: Deferred[None] = Deferred()

            async def render_GET(self, request: IRequest) -> bytes:
                try:
                    await Deferred()
                except CancelledError:
                    await self.cleanup
                return b"too late"

        clock = Clock()
        resource = Stubborn(clock=clock)
        server = InMemoryServer(resource, clock=clock)
        with capturedLogs() as events:
            client = server.get("/")
            client.close()
            resource.cleanup.callback(None)
        self.assertEqual(client.transport.value(), b"")
        self.assertEqual(failures(events), [])
        self.assertEqual(len(interruptions(events)), 1)
        self.assertEqual(resource.ledger.interrupted, 1)
        self.assertEqual(resource.ledger.pending, 0)

    def test_a_client_gone_before_rendering_starts_no_work(self) -> None:
        class Keep(Resource):
            isLeaf = True

            def __init__(self) -> None:
                super().__init__()
                self.requests: list[IRequest] = []

            def render(self, request: IRequest) -> int:
                self.requests.append(request)
                return NOT_DONE_YET

        keep = Keep()
        server = InMemoryServer(keep)
        get, post = server.get("/"), server.get("/", "POST")
        get.close()
        post.close()
        _, resource = serve()
        for request in keep.requests:
            self.assertEqual(resource.render(request), NOT_DONE_YET)
        # GET is never started; POST runs, as if the client had left later.
        self.assertEqual(resource.methods_seen, [b"POST"])
        resource.gates[0].callback(b"unseen")
        self.assertEqual(resource.events, ["finally"])
        self.assertEqual(resource.ledger.interruptions[Ending.ALREADY_GONE], 2)
        self.assertEqual(resource.ledger.pending, 0)
        self.assertEqual(get.transport.value() + post.transport.value(), b"")

    def test_a_completed_request_is_not_reported(self) -> None:
        server, resource = serve()
        with capturedLogs() as events:
            client = server.get("/")
            resource.gates[0].callback(b"ok")
            client.close()
        self.assertEqual(interruptions(events), [])
        self.assertEqual(resource.events, ["finally"])
        self.assertEqual(resource.ledger.completed, 1)
        self.assertEqual(resource.ledger.interrupted, 0)


class UnsafeMethodTests(SynchronousTestCase):
    def test_post_runs_to_completion_when_the_client_leaves(self) -> None:
        server, resource = serve()
        with capturedLogs() as events:
            client = server.get("/", "POST")
            client.close()
        # Counted as interrupted at once, but not cancelled.
        self.assertEqual(resource.events, [])
        self.assertFalse(resource.gates[0].called)
        self.assertEqual(resource.ledger.interrupted, 1)
        self.assertEqual(resource.ledger.pending, 0)
        [event] = interruptions(events)
        self.assertEqual(event["cancelled"], 0)
        self.assertEqual(
            event["outcome"].detail, "POST is not cancelled; it runs to completion"
        )
        self.assertIn("runs to completion", formatEvent(event))
        with capturedLogs() as events:
            resource.gates[0].callback(b"stored")
        self.assertEqual(resource.events, ["finally"])
        self.assertEqual(client.transport.value(), b"")
        self.assertEqual(list(events), [])
        self.assertEqual(resource.ledger.snapshot()["interrupted"], 1)
        self.assertEqual(resource.ledger.snapshot()["completed"], 0)

    def test_a_completed_post_has_no_detail(self) -> None:
        server, resource = serve()
        outcomes: list[Outcome] = []
        resource.ledger.observe(outcomes.append)
        client = server.get("/", "POST")
        resource.gates[0].callback(b"stored")
        self.assertEqual(answer(client)[:2], (200, b"stored"))
        self.assertEqual([o.detail for o in outcomes], [""])

    def test_a_post_failing_after_the_client_left_is_logged(self) -> None:
        server, resource = serve()
        client = server.get("/", "POST")
        client.close()
        with capturedLogs() as events:
            resource.gates[0].errback(Failure(KeyError("half-written")))
        self.assertEqual(len(failures(events)), 1)
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)
        self.assertEqual(client.transport.value(), b"")
        self.assertEqual(resource.ledger.interrupted, 1)
        self.assertEqual(resource.ledger.pending, 0)

    def test_opting_in_cancels_every_method(self) -> None:
        server, resource = serve(CancelAll)
        with capturedLogs() as events:
            server.get("/", "POST").close()
        self.assertEqual(resource.events, ["cancelled", "finally"])
        [event] = interruptions(events)
        self.assertEqual(event["cancelled"], 1)
        self.assertEqual(event["outcome"].detail, "")
        self.assertEqual(resource.ledger.interrupted, 1)
        self.assertEqual(resource.ledger.pending, 0)

    def test_cancel_methods_names_the_methods(self) -> None:
        server, resource = serve(CancelDelete)
        server.get("/", "DELETE").close()
        self.assertEqual(resource.events, ["cancelled", "finally"])
        server.get("/", "POST").close()
        self.assertEqual(resource.events, ["cancelled", "finally"])
        resource.gates[1].callback(b"")
        self.assertEqual(resource.events, ["cancelled", "finally", "finally"])
        self.assertEqual(resource.ledger.interrupted, 2)
        self.assertEqual(resource.ledger.pending, 0)

    def test_only_safe_methods_are_cancelled_by_default(self) -> None:
        resource = AsyncResource(clock=Clock())
        self.assertEqual(SAFE_METHODS, {b"GET", b"HEAD", b"OPTIONS"})
        for method in SAFE_METHODS:
            self.assertTrue(resource.cancels(method))
        for method in [b"POST", b"PUT", b"PATCH", b"DELETE", b"BREW"]:
            self.assertFalse(resource.cancels(method))

    def test_cancel_methods_must_be_bytes(self) -> None:
        class Wrong(AsyncResource):
            cancel_methods = frozenset({"GET"})  # type: ignore[arg-type]

        with self.assertRaises(TypeError):
            Wrong(clock=Clock())


class ErrorTests(SynchronousTestCase):
    def assert_logged_once(
        self, events: Sequence[LogEvent], error: type[Exception], *words: str
    ) -> None:
        [event] = failures(events)
        traceback = event["log_failure"].getTraceback()
        for word in words:
            self.assertIn(word, traceback)
        self.assertEqual(len(self.flushLoggedErrors(error)), 1)

    def test_an_exception_is_a_short_500_logged_once(self) -> None:
        class Broken(AsyncResource):
            isLeaf = True

            async def render_GET(self, request: IRequest) -> bytes:
                request.setHeader(b"Content-Type", b"application/json")
                await deferLater(self.clock, 1, lambda: None)
                raise ValueError("secret table name")

        clock = Clock()
        resource = Broken(clock=clock)
        server = InMemoryServer(resource, clock=clock)
        with capturedLogs() as events:
            client = server.get("/broken")
            server.advance(1)
        status, body, kind = answer(client)
        self.assertEqual(status, 500)
        self.assertEqual(kind, "text/plain; charset=utf-8")
        self.assertEqual(body, b"internal server error\n")
        self.assertNotIn(b"secret", client.transport.value())
        self.assertNotIn(b"Traceback", client.transport.value())
        self.assertEqual(
            formatEvent(failures(events)[0]).splitlines()[0],
            f"GET /broken from 127.0.0.1:{client.transport.getPeer().port} "
            "failed in render_GET",
        )
        self.assert_logged_once(
            events, ValueError, "render_GET", "ValueError: secret table name"
        )
        self.assertEqual(interruptions(events), [])
        self.assertEqual(resource.ledger.completed, 1)
        self.assertEqual(resource.ledger.pending, 0)

    def test_an_exception_before_the_first_await(self) -> None:
        class Eager(AsyncResource):
            isLeaf = True

            async def render_GET(self, request: IRequest) -> bytes:
                raise ZeroDivisionError()

        resource = Eager(clock=Clock())
        with capturedLogs() as events:
            client = InMemoryServer(resource).get("/")
        self.assertEqual(answer(client)[0], 500)
        self.assert_logged_once(events, ZeroDivisionError, "render_GET")
        self.assertEqual(resource.ledger.pending, 0)

    def test_head_error_has_no_body(self) -> None:
        server, resource = serve()
        client = server.connect().request("/", "HEAD")
        with capturedLogs() as events:
            resource.gates[0].errback(Failure(OSError("disk")))
        [response] = client.responses
        self.assertEqual(response.status, 500)
        self.assertEqual(response.body, b"")
        self.assert_logged_once(events, OSError, "OSError: disk")

    def test_a_non_bytes_return_is_500_and_logged(self) -> None:
        server, resource = serve()
        for value in ["text", None, 42]:
            with self.subTest(value=value):
                client = server.get("/")
                with capturedLogs() as events:
                    resource.gates[-1].callback(value)  # type: ignore[arg-type]
                self.assertEqual(answer(client)[:2], (500, b"internal server error\n"))
                self.assert_logged_once(
                    events, TypeError, f"render_GET returned {type(value).__name__}"
                )
        self.assertEqual(resource.ledger.completed, 3)
        self.assertEqual(resource.ledger.pending, 0)

    def test_returning_bytes_after_finishing_is_logged(self) -> None:
        class Twice(AsyncResource):
            isLeaf = True

            async def render_GET(self, request: IRequest) -> bytes:
                request.finish()
                return b"more"

        resource = Twice(clock=Clock())
        with capturedLogs() as events:
            client = InMemoryServer(resource).get("/")
        self.assertEqual(answer(client)[:2], (200, b""))
        self.assert_logged_once(events, TypeError, "return None after finish()")
        self.assertEqual(self.flushWarnings(), [])

    def test_a_failure_after_writing_began_cuts_the_response_short(self) -> None:
        """
        Once the status line is out a 500 cannot be sent: the connection is
        dropped so that the client sees an incomplete response, never one
        that looks whole.
        """

        class Midway(AsyncResource):
            isLeaf = True

            async def render_GET(self, request: IRequest) -> bytes:
                request.write(b"partial")
                await deferLater(self.clock, 1, lambda: None)
                raise RuntimeError("midway")

        clock = Clock()
        resource = Midway(clock=clock)
        server = InMemoryServer(resource, clock=clock)
        with capturedLogs() as events:
            client = server.get("/")
            server.advance(1)
        wire = client.transport.value()
        self.assertTrue(wire.startswith(b"HTTP/1.1 200 OK"))
        self.assertNotIn(b"500", wire)
        self.assertFalse(wire.endswith(b"0\r\n\r\n"))
        self.assertTrue(client.closed_by_server)
        self.assertIsNone(client.response)
        self.assert_logged_once(events, RuntimeError, "midway")
        self.assertEqual(resource.ledger.pending, 0)


class AccountingTests(SynchronousTestCase):
    @settings(max_examples=60, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.sampled_from(["GET", "POST", "HEAD"]),
                st.sampled_from(["answer", "fail", "close", "reset", "bad"]),
            ),
            max_size=20,
        )
    )
    def test_pending_returns_to_zero_after_any_mix(
        self, plan: list[tuple[str, str]]
    ) -> None:
        """
        Whatever mix of answers, failures, closes and resets, every request is
        counted once, every C{finally} runs and nothing stays pending.
        """
        server, resource = serve()
        clients = [(action, server.get("/", method)) for method, action in plan]
        for action, client in clients:
            if action == "close":
                client.close()
            elif action == "reset":
                client.reset()
        for (action, _), gate in zip(clients, list(resource.gates), strict=False):
            if action == "fail":
                gate.errback(Failure(LookupError("planned")))
            elif action == "bad":
                gate.callback("not bytes")  # type: ignore[arg-type]
            elif not gate.called:
                gate.callback(b"ok")
        self.flushLoggedErrors(LookupError, TypeError)
        snap = resource.ledger.snapshot()
        self.assertEqual(snap["pending"], 0)
        self.assertEqual(snap["completed"] + snap["interrupted"], len(plan))
        self.assertEqual(resource.events.count("finally"), len(plan))
        left = sum(action in ("close", "reset") for _, action in plan)
        self.assertEqual(snap["interrupted"], left)
        for action, client in clients:
            if action in ("close", "reset"):
                self.assertEqual(client.transport.value(), b"")
            else:
                self.assertIsNotNone(client.response)
