"""
The L{Ledger}: the live set, the counters, the observers, waiting for idle,
and carrying counters over into a new ledger.  Tokens stand in for watched
requests: the ledger needs only what L{Pending} says.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from twisted_close import Ending, Ledger, Limits, Outcome, Rejection
from twisted_close._ledger import WAIT_BUCKETS, Totals


class Token:
    """
    A pending request as the ledger sees it.
    """

    def __init__(self, ending: Ending = Ending.COMPLETED, endless: bool = False):
        self.endless = endless
        self.ending = ending
        self.ended_by: Ending | None = None
        self.phase = "waiting"

    @property
    def outcome(self) -> Outcome:
        return Outcome("GET", "/", "127.0.0.1:1", 0.5, self.ending)

    def end_by_server(self, ending: Ending, retry_after: int = 5) -> None:
        self.ended_by = ending

    def close_when_done(self) -> None:
        pass


def end(ledger: Ledger, token: Token, elapsed: float = 0.5) -> None:
    ledger.end(token, token.ending, elapsed)


class LiveSetTests(SynchronousTestCase):
    def test_pending_from_begin_to_end_oldest_first(self) -> None:
        ledger = Ledger()
        first, second = Token(), Token()
        ledger.begin(first)
        ledger.begin(second)
        self.assertEqual((ledger.pending, ledger.live()), (2, [first, second]))
        end(ledger, first)
        self.assertEqual((ledger.pending, ledger.live()), (1, [second]))

    def test_counted_in_its_limits_as_work_or_as_a_stream(self) -> None:
        ledger = Ledger(limits=Limits(max_pending=1, max_streams=1))
        work, stream = Token(), Token(endless=True)
        ledger.begin(work)
        ledger.begin(stream)
        self.assertEqual((ledger.limits.pending, ledger.limits.streams), (1, 1))
        # Both pending in the ledger's eyes; each pool full in the limits'.
        self.assertEqual(ledger.pending, 2)
        self.assertIs(ledger.limits.admit(), Rejection.OVERLOADED)
        self.assertIs(ledger.limits.admit(stream=True), Rejection.TOO_MANY_STREAMS)
        end(ledger, work)
        end(ledger, stream)
        self.assertEqual((ledger.limits.pending, ledger.limits.streams), (0, 0))
        self.assertIsNone(ledger.limits.admit())

    def test_a_record_was_never_pending(self) -> None:
        ledger = Ledger(limits=Limits(max_pending=1))
        seen: list[Outcome] = []
        ledger.observe(seen.append)
        outcome = Outcome("GET", "/outcomes", "127.0.0.1:1", 60.0, Ending.STALLED)
        ledger.record(outcome)
        self.assertEqual(seen, [outcome])
        self.assertEqual(ledger.server_endings, {Ending.STALLED: 1})
        self.assertEqual((ledger.pending, ledger.limits.pending), (0, 0))


class CounterTests(SynchronousTestCase):
    def test_each_ending_counted_where_it_belongs(self) -> None:
        ledger = Ledger()
        for ending in (Ending.COMPLETED, Ending.CLIENT_RESET, Ending.SHUTDOWN):
            token = Token(ending)
            ledger.begin(token)
            end(ledger, token, 0.07)
        ledger.reject(Rejection.OVERLOADED)
        self.assertEqual(
            ledger.snapshot(),
            {
                "pending": 0,
                "completed": 1,
                "interrupted": 1,
                "rejected": 1,
                "server_ended": 1,
            },
        )
        self.assertEqual(ledger.interruptions, {Ending.CLIENT_RESET: 1})
        self.assertEqual(ledger.server_endings, {Ending.SHUTDOWN: 1})
        # Only the client's interruptions are timed: 0.07 s falls under 0.1.
        buckets = ledger.totals().wait_buckets
        self.assertEqual(buckets[WAIT_BUCKETS.index(0.1)], 1)
        self.assertEqual(sum(buckets), 1)

    def test_observers_get_every_outcome_until_they_stop(self) -> None:
        ledger = Ledger()
        seen: list[Outcome] = []
        ledger.observe(seen.append)
        token = Token(Ending.CLIENT_CLOSED)
        ledger.begin(token)
        end(ledger, token)
        ledger.unobserve(seen.append)
        ledger.unobserve(seen.append)  # a second time: nothing
        again = Token()
        ledger.begin(again)
        end(ledger, again)
        self.assertEqual([o.ending for o in seen], [Ending.CLIENT_CLOSED])

    def test_interruptions_are_reported_completions_not(self) -> None:
        reported: list[Ending] = []

        class Reporter:
            def report(self, ending: Ending, token: object) -> None:
                reported.append(ending)

        ledger = Ledger(reporter=Reporter())  # type: ignore[arg-type]
        for ending in (Ending.COMPLETED, Ending.CLIENT_RESET):
            token = Token(ending)
            ledger.begin(token)
            end(ledger, token)
        self.assertEqual(reported, [Ending.CLIENT_RESET])


class IdleTests(SynchronousTestCase):
    def test_idle_at_once_when_nothing_is_pending(self) -> None:
        self.assertIsNone(self.successResultOf(Ledger().when_idle()))

    def test_idle_when_the_last_one_ends(self) -> None:
        ledger = Ledger()
        first, second = Token(), Token()
        ledger.begin(first)
        ledger.begin(second)
        idle = ledger.when_idle()
        end(ledger, first)
        self.assertNoResult(idle)
        end(ledger, second)
        self.assertIsNone(self.successResultOf(idle))

    def test_a_cancelled_wait_is_forgotten(self) -> None:
        ledger = Ledger()
        token = Token()
        ledger.begin(token)
        idle = ledger.when_idle()
        idle.cancel()
        self.failureResultOf(idle)
        end(ledger, token)  # would fire it twice if it were kept


class CarryOverTests(SynchronousTestCase):
    def test_a_restored_ledger_carries_on_counting_but_not_pending(self) -> None:
        old = Ledger(Clock())
        for ending in (Ending.COMPLETED, Ending.CLIENT_RESET, Ending.WORKER_DIED):
            token = Token(ending)
            old.begin(token)
            end(old, token, 2.0)
        old.reject(Rejection.CLIENT_PENDING)
        old.begin(Token())  # died with its process
        new = Ledger(Clock())
        new.restore(old.state())
        self.assertEqual(new.snapshot(), {**old.snapshot(), "pending": 0})
        self.assertEqual(new.totals().wait_buckets, old.totals().wait_buckets)
        token = Token()
        new.begin(token)
        end(new, token)
        self.assertEqual(new.completed, 2)

    def test_totals_of_several_states_add_up(self) -> None:
        states = []
        for ending in (Ending.CLIENT_CLOSED, Ending.CLIENT_CLOSED):
            ledger = Ledger()
            token = Token(ending)
            ledger.begin(token)
            end(ledger, token)
            ledger.begin(Token())
            states.append(ledger.state())
        totals = Totals.of(states)
        self.assertEqual((totals.pending, totals.interrupted), (2, 2))
        self.assertEqual(totals.interruptions, {Ending.CLIENT_CLOSED: 2})
