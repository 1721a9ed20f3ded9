"""
L{cancel_on_disconnect} in every order: items fired, cancelled or added
twice; requests already finished or already gone when it is called.
"""

from __future__ import annotations

import gc
import weakref

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from twisted_close import Ending, Ledger, RequestWatch, cancel_on_disconnect
from twisted_close.testing import Connection, InMemoryServer


class Counting:
    """
    Anything with C{cancel()}: counts the calls.
    """

    def __init__(self) -> None:
        self.cancels = 0

    def cancel(self) -> None:
        self.cancels += 1


class Holding(Resource):
    """
    Keeps every request open and hands it to the test.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Request] = []

    def render_GET(self, request: Request) -> int:
        self.requests.append(request)
        return NOT_DONE_YET


class Fixture:
    def __init__(self) -> None:
        self.clock = Clock()
        self.ledger = Ledger()
        self.resource = Holding()
        self.server = InMemoryServer(self.resource, clock=self.clock)

    def request(self) -> tuple[Request, Connection]:
        client = self.server.get("/work")
        return self.resource.requests[-1], client

    def watch(self, request: Request, *items: object) -> RequestWatch:
        return cancel_on_disconnect(
            request,
            *items,  # type: ignore[arg-type]
            ledger=self.ledger,
            clock=self.clock,
        )


class OrderTests(SynchronousTestCase):
    def test_each_pending_kind_is_cancelled_once(self) -> None:
        f = Fixture()
        request, client = f.request()
        call = f.clock.callLater(5, lambda: None)
        waiting: Deferred[None] = Deferred()
        other = Counting()
        f.watch(request, call, waiting, other)
        client.close()
        self.assertFalse(call.active())
        self.failureResultOf(waiting, CancelledError)
        self.assertEqual(other.cancels, 1)
        self.assertEqual(f.ledger.interruptions[Ending.CLIENT_CLOSED], 1)

    def test_the_same_item_twice_is_cancelled_once(self) -> None:
        f = Fixture()
        request, client = f.request()
        item = Counting()
        watch = f.watch(request, item, item)
        watch.add(item)
        with capturedLogs() as events:
            client.reset()
        self.assertEqual(item.cancels, 1)
        [event] = [e for e in events if "outcome" in e]
        self.assertEqual(event["cancelled"], 1)

    def test_items_already_done_are_left_alone(self) -> None:
        f = Fixture()
        request, client = f.request()
        ran = f.clock.callLater(1, lambda: None)
        stopped = f.clock.callLater(1, lambda: None)
        stopped.cancel()
        fired: Deferred[int] = Deferred()
        fired.callback(7)
        f.clock.advance(1)  # 'ran' runs now
        watch = f.watch(request, ran, stopped, fired)
        client.close()
        self.assertEqual(self.successResultOf(fired), 7)
        assert watch.outcome is not None
        self.assertEqual(watch.outcome.cancelled, 0)
        self.assertEqual(f.ledger.interrupted, 1)

    def test_items_added_after_the_client_left_are_cancelled_at_once(self) -> None:
        f = Fixture()
        request, client = f.request()
        watch = f.watch(request)
        client.close()
        late = Counting()
        watch.add(late)
        self.assertEqual(late.cancels, 1)
        self.assertEqual(f.ledger.interrupted, 1)

    def test_a_request_already_gone_is_reported_and_its_items_cancelled(
        self,
    ) -> None:
        f = Fixture()
        request, client = f.request()
        client.close()  # nobody watched: nothing reported yet
        self.assertEqual(f.ledger.interrupted, 0)
        item = Counting()
        with capturedLogs() as events:
            watch = f.watch(request, item)
        # notifyFinish() would never fire now (Twisted #4899): not waited on.
        self.assertEqual(item.cancels, 1)
        assert watch.outcome is not None
        self.assertIs(watch.outcome.ending, Ending.ALREADY_GONE)
        self.assertEqual(len([e for e in events if "outcome" in e]), 1)
        self.assertEqual(f.ledger.pending, 0)

    def test_a_request_already_finished_is_left_alone(self) -> None:
        f = Fixture()
        request, client = f.request()
        request.write(b"done")
        request.finish()
        item = Counting()
        watch = f.watch(request, item)
        client.close()
        self.assertEqual(item.cancels, 0)
        assert watch.outcome is not None
        self.assertIs(watch.outcome.ending, Ending.COMPLETED)
        self.assertEqual(f.ledger.snapshot()["pending"], 0)
        self.assertEqual(f.ledger.interrupted, 0)

    def test_items_added_after_completion_are_not_cancelled(self) -> None:
        f = Fixture()
        request, _ = f.request()
        watch = f.watch(request)
        request.finish()
        late = Counting()
        watch.add(late)
        self.assertEqual(late.cancels, 0)
        self.assertEqual(f.ledger.completed, 1)

    def test_after_completion_no_reference_to_the_work_is_kept(self) -> None:
        f = Fixture()
        request, client = f.request()
        item = Counting()
        ref = weakref.ref(item)
        watch = f.watch(request, item)
        del item
        request.finish()
        gc.collect()
        self.assertIsNone(ref())
        client.close()
        self.assertEqual(f.ledger.interrupted, 0)
        self.assertIsNotNone(watch.outcome)

    def test_something_without_cancel_is_refused(self) -> None:
        f = Fixture()
        request, _ = f.request()
        with self.assertRaises(TypeError):
            f.watch(request, object())
        # Refused before the ledger counted it: nothing is left pending.
        self.assertEqual(f.ledger.pending, 0)

    def test_work_given_twice_is_cancelled_once(self) -> None:
        f = Fixture()
        request, client = f.request()
        work = Counting()
        f.watch(request, work, work)
        client.close()
        self.assertEqual(work.cancels, 1)

    def test_a_failing_cancel_is_logged_and_the_rest_still_cancelled(self) -> None:
        class Broken:
            def cancel(self) -> None:
                raise RuntimeError("cannot")

        f = Fixture()
        request, client = f.request()
        after = Counting()
        f.watch(request, Broken(), after)
        client.close()
        self.assertEqual(after.cancels, 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(f.ledger.interrupted, 1)
