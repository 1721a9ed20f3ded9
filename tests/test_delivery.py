"""
Completion waits for the client's TCP to acknowledge the answer
(L{twisted_close._delivery}), in memory on a L{Clock}: the testing
connections hold their acknowledgements when asked.  The same over the
kernel's own acknowledgements is in C{tests/system/test_delivery_tcp.py}
and C{tests/system/test_network_faults.py}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from twisted_close import (
    ConnectionPolicy,
    DelayedResource,
    Ending,
    Ledger,
    Limits,
    Outcome,
    RequestWatch,
)
from twisted_close import _delivery as delivery
from twisted_close._connection import ConnectionWatch
from twisted_close._delivery import POLL, deliveries
from twisted_close._twisted.channel import http11_channel, network_producer
from twisted_close.testing import Connection, InMemoryServer


def serve(
    policy: ConnectionPolicy | None = None,
) -> tuple[InMemoryServer, Ledger, list[Outcome]]:
    policy = ConnectionPolicy() if policy is None else policy
    clock = Clock()
    ledger = Ledger(clock)
    outcomes: list[Outcome] = []
    ledger.observe(outcomes.append)
    resource = DelayedResource(b"hello", 1, clock=clock, ledger=ledger, policy=policy)
    return InMemoryServer(resource, clock=clock), ledger, outcomes


def answer_unacknowledged(server: InMemoryServer) -> Connection:
    """
    A client whose first answer (due at 1 s) was sent and is not yet
    acknowledged: it holds its acknowledgements until told.
    """
    client = server.connect()
    client.hold_acknowledgements()
    client.request("/")
    server.advance(1)
    return client


def looks(clock: Clock) -> list[object]:
    # The deliveries' own timer among the connections' idle timers.
    return [c for c in clock.getDelayedCalls() if "Deliveries._look" in repr(c)]


class DeliveryTests(SynchronousTestCase):
    def test_completed_once_acknowledged_not_once_written(self) -> None:
        server, ledger, outcomes = serve()
        client = server.connect()
        client.hold_acknowledgements()
        client.request("/")
        [watch] = ledger.live()
        assert isinstance(watch, RequestWatch)
        self.assertEqual(watch.phase, "waiting")
        server.advance(1)
        # Written in full, and read by the client: not acknowledged yet.
        self.assertEqual(client.response.body, b"hello")  # type: ignore[union-attr]
        self.assertEqual((watch.phase, ledger.pending, outcomes), ("delivering", 1, []))
        server.advance(POLL * 10)
        self.assertEqual(ledger.completed, 0)
        client.acknowledge()
        server.advance(POLL)
        self.assertEqual(ledger.completed, 1)
        [outcome] = outcomes
        self.assertEqual(
            (outcome.ending, outcome.phase, outcome.delivery),
            (Ending.COMPLETED, "delivering", "acknowledged"),
        )
        self.assertTrue(watch.acknowledged)
        # No timer of its own left once nothing waits.
        self.assertEqual(looks(server.clock), [])

    def test_gone_before_its_acknowledgement_is_not_completed(self) -> None:
        server, ledger, outcomes = serve()
        client = answer_unacknowledged(server)
        with capturedLogs() as events:
            client.close()
        [outcome] = outcomes
        # The log line says in which phase it ended.
        [line] = [formatEvent(e) for e in events if "outcome" in e]
        self.assertRegex(
            line,
            r"^Connection interrupted: GET / from \S+ after 1\.00 s while "
            r"delivering \(answer not acknowledged; \d+ bytes not acknowledged\)$",
        )
        self.assertIs(outcome.ending, Ending.ANSWER_NOT_ACKNOWLEDGED)
        self.assertEqual(outcome.phase, "delivering")
        self.assertGreater(outcome.unacknowledged, len(b"hello"))
        self.assertEqual(
            outcome.detail, f"{outcome.unacknowledged} bytes not acknowledged"
        )
        # The client's doing, not the server's.
        self.assertEqual((ledger.completed, ledger.interrupted), (0, 1))
        self.assertEqual(ledger.server_ended, 0)

    def test_where_it_cannot_be_known_it_says_so(self) -> None:
        server, _ledger, outcomes = serve()
        server.get("/")
        server.advance(1)
        [outcome] = outcomes
        self.assertEqual(
            (outcome.ending, outcome.delivery), (Ending.COMPLETED, "unknown")
        )

    def test_where_it_cannot_be_known_a_connection_is_asked_once(self) -> None:
        asked: list[object] = []

        def connection_bytes(transport: object) -> None:
            asked.append(transport)

        self.patch(delivery, "connection_bytes", connection_bytes)
        server, _ledger, outcomes = serve()
        client = server.connect()
        for _ in range(3):
            client.request("/")
            server.advance(1)
        self.assertEqual([o.delivery for o in outcomes], ["unknown"] * 3)
        self.assertEqual(len(asked), 1)

    def test_written_counts_it_once_handed_over(self) -> None:
        server, _ledger, outcomes = serve(ConnectionPolicy(delivery="written"))
        answer_unacknowledged(server)
        [outcome] = outcomes
        self.assertEqual(
            (outcome.ending, outcome.delivery), (Ending.COMPLETED, "written")
        )

    def test_answers_waiting_share_one_timer(self) -> None:
        server, ledger, _ = serve()
        clients = [server.connect() for _ in range(5)]
        for client in clients:
            client.hold_acknowledgements()
            client.request("/")
        server.advance(1)
        self.assertEqual(len(deliveries(server.clock)), 5)
        self.assertEqual(len(looks(server.clock)), 1)
        for client in clients:
            client.acknowledge()
        server.advance(POLL)
        self.assertEqual((ledger.completed, len(deliveries(server.clock))), (5, 0))

    def test_its_end_lets_go_of_the_channel_and_watch(self) -> None:
        # The channel and its connection's watch hold each other: told of
        # the end by the deliveries, the watch lets go, so that a connection
        # closed after its answers is freed at once, not by the cyclic GC.
        server, ledger, _ = serve()
        client = answer_unacknowledged(server)
        client.acknowledge()
        server.advance(POLL)
        connection = network_producer(http11_channel(client.channel))
        assert isinstance(connection, ConnectionWatch)
        self.assertIsNotNone(connection.watch)
        client.close()
        self.assertIsNone(connection.watch)
        self.assertEqual(ledger.completed, 1)

    def test_interrupted_while_answering_or_waiting_says_where(self) -> None:
        server, _ledger, outcomes = serve()
        server.get("/").close()
        self.assertEqual([o.phase for o in outcomes], ["waiting"])

    def test_a_kept_alive_connection_is_hooked_once(self) -> None:
        # Answers on one connection, each acknowledged before the next: its
        # loss is listened to once, however often its list empties.
        server, ledger, _ = serve()
        client = server.connect()
        client.hold_acknowledgements()
        for _ in range(3):
            client.request("/")
            server.advance(1)
            client.acknowledge()
            server.advance(POLL)
        self.assertEqual(ledger.completed, 3)
        self.assertEqual(len(client.transport.on_lost), 1)  # type: ignore[attr-defined]
        # Nothing waits: no timer left running for the idle connection.
        self.assertEqual(looks(server.clock), [])

    def test_the_next_request_settles_the_answer_before_it(self) -> None:
        # The client acknowledged the first answer before it asked again:
        # it is completed as the second request begins, with no look.
        server, ledger, _ = serve()
        client = answer_unacknowledged(server)
        client.acknowledge()
        self.assertEqual((ledger.completed, ledger.pending), (0, 1))
        client.request("/")
        self.assertEqual((ledger.completed, ledger.pending), (1, 1))

    def test_an_acknowledged_answer_does_not_count_against_the_next(self) -> None:
        # One pending request per client: a client that asks again once it
        # acknowledged its answer is admitted, not refused for it.
        clock = Clock()
        ledger = Ledger(clock, limits=Limits(max_pending_per_client=1))
        resource = DelayedResource(b"hello", 0, clock=clock, ledger=ledger)
        server = InMemoryServer(resource, clock=clock)
        client = server.connect()
        client.hold_acknowledgements()
        for _ in range(3):
            client.request("/")
            server.advance(0)
            client.acknowledge()
        self.assertEqual([r.status for r in client.responses], [200, 200, 200])
        self.assertEqual(ledger.completed, 2)

    def test_the_next_request_leaves_an_answer_not_acknowledged(self) -> None:
        server, ledger, _ = serve()
        client = answer_unacknowledged(server)
        client.request("/")
        self.assertEqual((ledger.completed, ledger.pending), (0, 2))
        client.acknowledge()
        server.advance(POLL)
        self.assertEqual((ledger.completed, ledger.pending), (1, 1))

    def test_a_look_asks_only_once_the_kernel_has_the_answer(self) -> None:
        # An answer Twisted still holds cannot be acknowledged: the look
        # does not ask the kernel about it until all of it was handed over.
        class Bytes:
            def __init__(self) -> None:
                self.handed_over, self.asked = 0, 0

            def written(self) -> int:
                return 100

            def handed(self) -> int:
                return self.handed_over

            def acked(self) -> int:
                self.asked += 1
                return self.handed_over

        class Answer:
            done = False

            def delivered(self) -> None:
                self.done = True

            def undelivered(self, unacknowledged: int) -> None:
                raise AssertionError("not lost")

        clock = Clock()
        found, answer = Bytes(), Answer()
        connection = delivery.Connection(delivery.Deliveries(clock), found)
        self.assertTrue(connection.track(answer))
        clock.advance(POLL * 3)
        self.assertEqual((found.asked, answer.done), (0, False))
        found.handed_over = 100
        clock.advance(POLL)
        self.assertEqual((found.asked, answer.done), (1, True))


class AfterWritesTests(SynchronousTestCase):
    """
    A connection's first answer, held by Twisted as it ends (on TCP the
    transport buffers it until the reactor writes), is tracked on the next
    turn of the reactor: answers due at once are written first.
    """

    def first_answer(
        self,
        unsent: int = 40,
        headers: dict[str, str] | None = None,
        in_turn: Callable[[Any], object] | None = None,
    ) -> tuple[InMemoryServer, Ledger, list[Outcome], Any, list[int]]:
        """
        A connection's first answer, due at 1 s, on a transport that holds
        C{unsent} bytes as a socket's does; C{in_turn(transport)} is called
        after the answer, in its turn, and then how many answers the
        deliveries track is noted (C{seen}).
        """
        server, ledger, outcomes = serve()
        client = server.connect()
        client.hold_acknowledgements()
        # As a socket's transport does: what was written waits in Twisted's
        # buffer (FileDescriptor.dataBuffer) until the reactor's writes.
        transport: Any = client.transport
        transport.dataBuffer, transport.offset, transport._tempDataLen = (
            b"x" * unsent,
            0,
            0,
        )
        transport.disconnected = False
        client.request("/", headers=headers)
        seen: list[int] = []

        def turn() -> None:
            if in_turn is not None:
                in_turn(transport)
            seen.append(len(deliveries(server.clock)))

        # Due with the answer, run after it in the same turn.
        server.clock.callLater(1, turn)
        server.advance(1)
        return server, ledger, outcomes, client, seen

    def test_tracked_after_the_turn_then_completed(self) -> None:
        server, ledger, outcomes, client, seen = self.first_answer()
        self.assertEqual(seen, [0])
        self.assertEqual(len(deliveries(server.clock)), 1)
        client.acknowledge()
        server.advance(POLL)
        [outcome] = outcomes
        self.assertEqual(
            (outcome.ending, outcome.delivery), (Ending.COMPLETED, "acknowledged")
        )
        self.assertEqual(ledger.pending, 0)

    def test_lost_within_the_turn_its_held_bytes_were_not_acknowledged(
        self,
    ) -> None:
        # The connection ends in the turn that was to write the answer.
        _, ledger, outcomes, _, _ = self.first_answer(
            unsent=57, in_turn=lambda t: setattr(t, "disconnected", True)
        )
        [outcome] = outcomes
        self.assertEqual(
            (outcome.ending, outcome.phase, outcome.unacknowledged),
            (Ending.ANSWER_NOT_ACKNOWLEDGED, "delivering", 57),
        )
        self.assertEqual((ledger.completed, ledger.interrupted), (0, 1))

    def test_a_connection_that_closes_after_it_is_tracked_at_once(self) -> None:
        # Closed once written: its end is hooked before it can come.
        *_, seen = self.first_answer(headers={"Connection": "close"})
        self.assertEqual(seen, [1])

    def test_nothing_held_is_tracked_at_once(self) -> None:
        *_, seen = self.first_answer(unsent=0)
        self.assertEqual(seen, [1])


class PolicyTests(SynchronousTestCase):
    def test_a_bad_delivery_is_refused_by_name(self) -> None:
        with self.assertRaises(ValueError) as caught:
            ConnectionPolicy(delivery="sent")  # type: ignore[arg-type]
        self.assertIn("delivery", str(caught.exception))
