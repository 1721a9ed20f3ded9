"""
asyncio awaitables in L{AsyncResource} and asyncio Tasks and Futures in
L{cancel_on_disconnect}.

The Site runs in memory on a L{Clock}; the resource's reactor is an
C{AsyncioSelectorReactor} of the test's own, on a fresh event loop that is
never installed nor run forever: the test runs the loop a few turns at a
time.  So these tests run the same whatever reactor the suite runs on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import cast

from twisted.internet.asyncioreactor import AsyncioSelectorReactor
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock, deferLater
from twisted.logger import LogEvent, LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from twisted_close import AsyncResource, Ending, Ledger, Outcome, cancel_on_disconnect
from twisted_close._asyncio import AsyncioReactorNeeded, run_coroutine
from twisted_close._twisted.reactor import asyncio_event_loop
from twisted_close.testing import InMemoryServer


class AsyncioWork(AsyncResource):
    """
    GET sleeps 30 s with asyncio; POST waits for an asyncio Event the test
    sets; both say what happened to them.
    """

    isLeaf = True

    def __init__(self, clock: IReactorTime, ledger: Ledger) -> None:
        super().__init__(clock=clock, ledger=ledger)
        self.events: list[str] = []
        self.go = asyncio.Event()

    async def render_GET(self, request: IRequest) -> bytes:
        try:
            await asyncio.sleep(30)
            return b"slept"
        except asyncio.CancelledError:
            self.events.append("cancelled")
            raise
        finally:
            self.events.append("finally")

    async def render_POST(self, request: IRequest) -> bytes:
        try:
            await self.go.wait()
            return b"posted"
        finally:
            self.events.append("finally")


def turn(loop: asyncio.AbstractEventLoop, seconds: float = 0.0) -> None:
    """
    Run C{loop} for C{seconds}, and at least a few turns.
    """
    # Under pytest --reactor=asyncio the suite's own loop counts as running
    # in this thread (its reactor waits in another greenlet): step aside
    # from it while ours runs.
    suite_loop = asyncio._get_running_loop()
    asyncio._set_running_loop(None)
    try:
        loop.run_until_complete(asyncio.sleep(seconds))
        for _ in range(5):
            loop.run_until_complete(asyncio.sleep(0))
    finally:
        asyncio._set_running_loop(suite_loop)


class AsyncioReactorTests(SynchronousTestCase):
    """
    On the asyncio reactor a coroutine runs as an asyncio Task.
    """

    def setUp(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.addCleanup(self.loop.close)
        self.reactor = AsyncioSelectorReactor(self.loop)
        self.addCleanup(self.reactor.disconnectAll)
        self.ledger = Ledger(cast(IReactorTime, self.reactor))

    def turn(self, seconds: float = 0.0) -> None:
        turn(self.loop, seconds)

    def serve(self, resource: AsyncResource) -> InMemoryServer:
        return InMemoryServer(resource, clock=Clock())

    def test_the_reactor_loop_is_found(self) -> None:
        self.assertIs(asyncio_event_loop(self.reactor), self.loop)
        self.assertIsNone(asyncio_event_loop(Clock()))

    def test_the_client_leaving_cancels_the_task_at_its_await(self) -> None:
        resource = AsyncioWork(cast(IReactorTime, self.reactor), self.ledger)
        server = self.serve(resource)
        left = server.get("/slow")
        self.turn()
        self.assertEqual(self.ledger.pending, 1)
        self.assertEqual(resource.events, [])

        with capturedLogs() as events:
            left.close()
            self.turn()

        self.assertEqual(resource.events, ["cancelled", "finally"])
        self.assertIsNone(left.response)
        [outcome] = [e["outcome"] for e in events if "outcome" in e]
        self.assertEqual(outcome.ending, Ending.CLIENT_CLOSED)
        self.assertEqual(outcome.cancelled, 1)
        self.assertIn("Connection interrupted: GET /slow", formatEvent(events[0]))
        self.assertEqual(self.ledger.interrupted, 1)
        self.assertEqual(self.ledger.pending, 0)
        # No failure logged: the cancellation was the plan.
        self.assertEqual([e for e in events if "log_failure" in e], [])

    def test_deferreds_and_asyncio_awaitables_mix(self) -> None:
        reactor = cast(IReactorTime, self.reactor)

        class Mixed(AsyncResource):
            isLeaf = True

            async def render_GET(self, request: IRequest) -> bytes:
                await asyncio.sleep(0.01)
                word = await deferLater(reactor, 0.01, lambda: b"both")
                lock = asyncio.Lock()
                async with lock:
                    await asyncio.sleep(0)
                return word

        resource = Mixed(clock=reactor, ledger=self.ledger)
        client = self.serve(resource).get("/")
        self.turn(0.1)
        assert client.response is not None
        self.assertEqual((client.response.status, client.response.body), (200, b"both"))
        self.assertEqual(self.ledger.completed, 1)

    def test_a_deferred_awaited_in_a_task_is_cancelled_with_it(self) -> None:
        reactor = cast(IReactorTime, self.reactor)
        seen: list[str] = []

        class Waits(AsyncResource):
            isLeaf = True

            async def render_GET(self, request: IRequest) -> bytes:
                try:
                    return await deferLater(reactor, 30, lambda: b"late")
                except CancelledError:
                    # Twisted's own, as on any other reactor.
                    seen.append("twisted CancelledError")
                    raise

        client = self.serve(Waits(clock=reactor, ledger=self.ledger)).get("/")
        self.turn()
        self.assertEqual(len(self.reactor.getDelayedCalls()), 1)
        client.reset()
        self.turn()
        self.assertEqual(seen, ["twisted CancelledError"])
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertEqual(self.ledger.interruptions[Ending.CLIENT_RESET], 1)

    def test_a_deferred_waiting_on_another_is_cancelled_with_the_task(
        self,
    ) -> None:
        # What treq.get() gives: a Deferred "called" but paused, chained to
        # the HTTP client's own.
        cancelled: list[object] = []
        inner: Deferred[bytes] = Deferred(cancelled.append)
        chained: Deferred[bytes] = succeed(None).addCallback(lambda _: inner)
        reactor = cast(IReactorTime, self.reactor)

        class Chained(AsyncResource):
            isLeaf = True

            async def render_GET(self, request: IRequest) -> bytes:
                return await chained

        client = self.serve(Chained(clock=reactor, ledger=self.ledger)).get("/")
        self.turn()
        client.close()
        self.turn()
        self.assertEqual(cancelled, [inner])
        self.assertEqual(self.ledger.interrupted, 1)

    def test_an_unsafe_method_runs_to_completion(self) -> None:
        resource = AsyncioWork(cast(IReactorTime, self.reactor), self.ledger)
        outcomes: list[Outcome] = []
        self.ledger.observe(outcomes.append)
        left = self.serve(resource).get("/", method="POST")
        self.turn()
        left.close()
        self.turn()
        self.assertEqual(resource.events, [])  # still waiting, not cancelled
        [outcome] = outcomes
        self.assertIn("POST is not cancelled", outcome.detail)
        resource.go.set()
        self.turn()
        self.assertEqual(resource.events, ["finally"])
        self.assertIsNone(left.response)
        self.assertEqual((self.ledger.interrupted, self.ledger.pending), (1, 0))

    def test_an_error_in_a_task_is_a_500(self) -> None:
        class Broken(AsyncResource):
            isLeaf = True

            async def render_GET(self, request: IRequest) -> bytes:
                await asyncio.sleep(0)
                raise ValueError("boom")

        reactor = cast(IReactorTime, self.reactor)
        client = self.serve(Broken(clock=reactor, ledger=self.ledger)).get("/")
        with capturedLogs() as events:
            self.turn()
        assert client.response is not None
        self.assertEqual(client.response.status, 500)
        self.assertNotIn(b"boom", client.response.body)
        [failure] = [e for e in events if "log_failure" in e]
        self.assertTrue(failure["log_failure"].check(ValueError))
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)


class OtherReactorTests(SynchronousTestCase):
    """
    On any other reactor, an asyncio awaitable is a clear 500, not a riddle.
    """

    def test_asyncio_sleep_is_a_500_that_names_the_fix(self) -> None:
        clock = Clock()
        resource = AsyncioWork(clock, Ledger(clock))
        with capturedLogs() as events:
            client = InMemoryServer(resource, clock=clock).get("/nap")
        self.assert_needs_asyncio(client, events, resource.events)

    def test_an_awaited_asyncio_future_is_a_500_that_names_the_fix(self) -> None:
        clock = Clock()
        ran: list[str] = []

        class Queued(AsyncResource):
            isLeaf = True

            async def render_GET(self, request: IRequest) -> bytes:
                # A future of a loop made elsewhere, as a library may keep.
                try:
                    await other.create_future()
                    return b"never"
                finally:
                    ran.append("finally")

        with event_loop() as other, capturedLogs() as events:
            resource = Queued(clock=clock, ledger=Ledger(clock))
            client = InMemoryServer(resource, clock=clock).get("/nap")
        self.assert_needs_asyncio(client, events, ran)

    def assert_needs_asyncio(
        self, client: object, events: Sequence[LogEvent], ran: list[str]
    ) -> None:
        response = getattr(client, "response", None)
        assert response is not None
        self.assertEqual(response.status, 500)
        self.assertEqual(ran, ["finally"])  # raised at its await
        [line] = [formatEvent(e) for e in events if e["log_level"] is LogLevel.error]
        self.assertIn("/nap from ", line)
        self.assertIn("needs the asyncio reactor: run twistd -r asyncio", line)
        self.assertNotIn("\n", line)
        # A deployment matter, not a bug: no traceback.
        self.assertEqual([e for e in events if "log_failure" in e], [])

    def test_deferreds_still_run_through_fromCoroutine(self) -> None:
        clock = Clock()

        async def work() -> int:
            await asyncio.sleep(0)  # a bare yield needs no loop
            return await deferLater(clock, 1, lambda: 7)

        done = run_coroutine(work(), None)
        clock.advance(1)
        self.assertEqual(self.successResultOf(done), 7)

    def test_the_error_reaches_the_coroutine(self) -> None:
        caught: list[BaseException] = []

        async def work() -> None:
            loop = asyncio.new_event_loop()
            try:
                await loop.create_future()
            except AsyncioReactorNeeded as e:
                caught.append(e)
            finally:
                loop.close()

        self.successResultOf(run_coroutine(work(), None))
        [error] = caught
        self.assertIn("awaited an asyncio Future", str(error))


@contextmanager
def event_loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    try:
        yield loop
    finally:
        loop.close()


class CancelOnDisconnectTests(SynchronousTestCase):
    """
    asyncio Tasks and Futures are pending work like any other.
    """

    def test_a_deferred_waiting_on_another_counts_as_pending(self) -> None:
        clock = Clock()
        ledger = Ledger(clock)
        outcomes: list[Outcome] = []
        ledger.observe(outcomes.append)
        cancelled: list[object] = []
        inner: Deferred[None] = Deferred(cancelled.append)
        chained = succeed(None).addCallback(lambda _: inner)

        class Leaf(Resource):
            isLeaf = True

            def render_GET(self, request: IRequest) -> int:
                cancel_on_disconnect(request, chained, ledger=ledger, clock=clock)
                return NOT_DONE_YET

        InMemoryServer(Leaf(), clock=clock).get("/").close()
        self.assertEqual(cancelled, [inner])
        self.failureResultOf(chained, CancelledError)
        [outcome] = outcomes
        self.assertEqual(outcome.cancelled, 1)

    def test_tasks_and_futures_are_cancelled_and_counted(self) -> None:
        clock = Clock()
        ledger = Ledger(clock)
        outcomes: list[Outcome] = []
        ledger.observe(outcomes.append)

        with event_loop() as loop:
            future: asyncio.Future[None] = loop.create_future()
            finished: asyncio.Future[None] = loop.create_future()
            finished.set_result(None)

            async def nap() -> None:
                await asyncio.sleep(30)

            task = loop.create_task(nap())
            turn(loop)

            class Leaf(Resource):
                isLeaf = True

                def render_GET(self, request: IRequest) -> int:
                    cancel_on_disconnect(
                        request, future, finished, task, ledger=ledger, clock=clock
                    )
                    return NOT_DONE_YET

            client = InMemoryServer(Leaf(), clock=clock).get("/")
            client.close()
            turn(loop)

            self.assertTrue(future.cancelled())
            self.assertTrue(task.cancelled())
            self.assertFalse(finished.cancelled())
        [outcome] = outcomes
        # The finished future was not pending: two cancelled, not three.
        self.assertEqual(outcome.cancelled, 2)
        self.assertEqual(ledger.interrupted, 1)
