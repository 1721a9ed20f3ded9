"""
L{WorkResource}: every resource that takes on work goes through one
opening, so each answers C{405} for a method it does not take, and C{503}
with C{Retry-After} past the ledger's limit and during a graceful drain.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import NOT_DONE_YET

from twisted_close import (
    AsyncResource,
    DelayedResource,
    EventStreamResource,
    GracefulDrain,
    Ledger,
    Limits,
    Rejection,
    WorkResource,
)
from twisted_close.closedemo.outcomes import OutcomeStreamResource
from twisted_close.testing import InMemoryServer


class Waiting(AsyncResource):
    isLeaf = True

    async def render_GET(self, request: IRequest) -> bytes:
        await Deferred()
        return b"never"


Make = Callable[[Clock, Ledger], IResource]

WORK: dict[str, Make] = {
    "delayed": lambda clock, ledger: DelayedResource(clock=clock, ledger=ledger),
    "async": lambda clock, ledger: Waiting(clock=clock, ledger=ledger),
    "events": lambda clock, ledger: EventStreamResource(clock=clock, ledger=ledger),
}


class AdmissionTests(SynchronousTestCase):
    def refused_past_the_limit(
        self,
        make: Make,
        ledger: Ledger | None = None,
        reason: Rejection = Rejection.OVERLOADED,
        words: bytes = b"server overloaded",
    ) -> None:
        clock = Clock()
        ledger = (
            Ledger(clock, limits=Limits(max_pending=1)) if ledger is None else ledger
        )
        server = InMemoryServer(make(clock, ledger), clock=clock)
        server.get("/")
        self.assertEqual(ledger.pending, 1)
        response = server.get("/").response
        assert response is not None
        self.assertEqual(response.status, 503)
        self.assertEqual(response.header("retry-after"), "1")
        self.assertEqual(response.body, words + b"; retry in 1 s\n")
        self.assertEqual(ledger.pending, 1)
        self.assertEqual(ledger.rejections, {reason: 1})

    def refused_during_a_drain(self, make: Make) -> None:
        clock = Clock()
        ledger = Ledger(clock)
        server = InMemoryServer(make(clock, ledger), clock=clock)
        GracefulDrain(ledger, clock, grace=1.0).stopService()
        client = server.get("/")
        response = client.response
        assert response is not None
        self.assertEqual(response.status, 503)
        self.assertEqual(response.header("retry-after"), "1")
        self.assertEqual(response.header("connection"), "close")
        self.assertTrue(client.closed_by_server)
        self.assertEqual(ledger.pending, 0)
        self.assertEqual(ledger.rejections, {Rejection.SHUTTING_DOWN: 1})

    def not_allowed(self, make: Make) -> None:
        clock = Clock()
        ledger = Ledger(clock, limits=Limits(max_pending=0))
        response = (
            InMemoryServer(make(clock, ledger), clock=clock).get("/", "BREW").response
        )
        assert response is not None
        # The method is checked before admission: 405, not 503.
        self.assertEqual(response.status, 405)
        self.assertIn("GET", response.header("allow") or "")
        self.assertEqual(ledger.rejected, 0)

    def test_delayed_resource_refuses_past_the_limit(self) -> None:
        self.refused_past_the_limit(WORK["delayed"])

    def test_async_resource_refuses_past_the_limit(self) -> None:
        self.refused_past_the_limit(WORK["async"])

    def test_event_streams_refuse_past_the_stream_limit(self) -> None:
        # Streams are not pending work: they have their own pool.
        self.refused_past_the_limit(
            WORK["events"],
            Ledger(limits=Limits(max_pending=0, max_streams=1)),
            Rejection.TOO_MANY_STREAMS,
            b"too many streams",
        )

    def test_delayed_resource_refuses_during_a_drain(self) -> None:
        self.refused_during_a_drain(WORK["delayed"])

    def test_async_resource_refuses_during_a_drain(self) -> None:
        self.refused_during_a_drain(WORK["async"])

    def test_event_streams_refuse_during_a_drain(self) -> None:
        self.refused_during_a_drain(WORK["events"])

    def test_every_work_resource_checks_the_method_first(self) -> None:
        for make in WORK.values():
            self.not_allowed(make)


class OutcomeStreamAdmissionTests(SynchronousTestCase):
    """
    The demo's outcome stream is turned away in the same way.
    """

    def test_refused_past_the_stream_limit(self) -> None:
        clock, ledger = Clock(), Ledger(limits=Limits(max_streams=1))
        server = InMemoryServer(OutcomeStreamResource(ledger, clock=clock), clock)
        server.get("/")
        response = server.get("/").response
        assert response is not None
        self.assertEqual(response.status, 503)
        self.assertEqual(response.header("retry-after"), "5")
        self.assertEqual(response.body, b"too many streams; retry in 5 s\n")
        self.assertEqual(ledger.rejections, {Rejection.TOO_MANY_STREAMS: 1})

    def test_refused_during_a_drain(self) -> None:
        clock, ledger = Clock(), Ledger()
        server = InMemoryServer(OutcomeStreamResource(ledger, clock=clock), clock)
        ledger.limits.close()
        response = server.get("/").response
        assert response is not None
        self.assertEqual(response.status, 503)
        self.assertEqual(response.header("retry-after"), "5")
        self.assertEqual(response.body, b"server shutting down; retry in 5 s\n")
        self.assertEqual(ledger.rejections, {Rejection.SHUTTING_DOWN: 1})


class Echo(WorkResource):
    """
    A user's own resource: its work is a timer that answers the method.
    """

    allowed = (b"POST",)

    def begin(self, request: IRequest) -> int:
        def answer() -> None:
            request.write(request.method)
            request.finish()

        self.watch(request, self.clock.callLater(1, answer))
        return NOT_DONE_YET


class OwnResourceTests(SynchronousTestCase):
    def test_a_subclass_gets_the_same_opening(self) -> None:
        clock = Clock()
        ledger = Ledger(clock, limits=Limits(max_pending=1))
        server = InMemoryServer(Echo(clock=clock, ledger=ledger), clock=clock)
        wrong = server.get("/", "GET").response
        assert wrong is not None
        self.assertEqual((wrong.status, wrong.header("allow")), (405, "POST"))
        first = server.get("/", "POST")
        busy = server.get("/", "POST").response
        assert busy is not None
        self.assertEqual(busy.status, 503)
        first.close()
        self.assertEqual(ledger.interrupted, 1)
        # The timer was cancelled; what is left is the channels' idle timeout.
        calls = clock.getDelayedCalls()
        names = [getattr(getattr(c, "func", None), "__name__", "") for c in calls]
        self.assertNotIn("answer", names)
