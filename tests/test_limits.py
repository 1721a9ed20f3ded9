"""
Streams have their own pool, and one client address its own share: caps on
all streams, on one client's streams and on one client's pending answers,
through the closedemo site in memory on a L{Clock}.
"""

from __future__ import annotations

from typing import cast

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IRequest
from twisted.web.test.requesthelper import DummyRequest

from twisted_close import EventStreamResource, Ledger, Limits, Rejection
from twisted_close.testing import Connection, InMemoryServer

from .helpers import demo_server


def serve(**limits: int | None) -> tuple[InMemoryServer, Ledger]:
    return demo_server(2, max_pending=100, **limits)  # type: ignore[arg-type]


def status(client: Connection) -> int | None:
    head = client.transport.value()
    return int(head[9:12]) if head.startswith(b"HTTP/1.1 ") else None


class StreamPoolTests(SynchronousTestCase):
    def test_one_client_gets_its_share_of_streams_and_no_more(self) -> None:
        server, ledger = serve(max_streams=100, max_streams_per_client=3)
        mine = [server.connect("127.0.0.1").request(p) for p in ["/events"] * 2]
        mine.append(server.connect("127.0.0.1").request("/outcomes"))
        refused = server.connect("127.0.0.1").request("/events").response
        assert refused is not None
        self.assertEqual(
            (refused.status, refused.header("retry-after"), refused.body),
            (429, "1", b"too many streams from this client; retry in 1 s\n"),
        )
        self.assertEqual(
            server.connect("127.0.0.1").request("/outcomes").response.status,  # type: ignore[union-attr]
            429,
        )
        # Another address has its own share, and its answers.
        theirs = [server.connect("127.0.0.2").request("/events") for _ in range(3)]
        answer = server.connect("127.0.0.2").request("/?delay=0")
        server.advance(0)
        self.assertEqual([status(c) for c in mine + theirs], [200] * 6)
        self.assertEqual(answer.response.status, 200)  # type: ignore[union-attr]
        # So has the same address for answers that are not streams.
        self.assertEqual(server.get("/?delay=0").response, None)
        server.advance(0)
        self.assertEqual(ledger.rejections, {Rejection.CLIENT_STREAMS: 2})
        self.assertEqual(ledger.limits.streams, 6)
        self.assertEqual(ledger.limits.streams_of("127.0.0.1"), 3)

    def test_a_stream_that_ends_gives_its_place_back(self) -> None:
        server, ledger = serve(max_streams_per_client=1)
        first = server.get("/events")
        self.assertEqual(server.get("/outcomes").response.status, 429)  # type: ignore[union-attr]
        first.close()
        self.assertEqual(status(server.get("/outcomes")), 200)
        root = server.site.resource.resource
        root.outcomes.end_all()
        self.assertEqual(status(server.get("/events")), 200)
        self.assertEqual(ledger.limits.streams, 1)

    def test_all_streams_together_are_capped(self) -> None:
        server, ledger = serve(max_streams=4, max_streams_per_client=None)
        opened = [
            server.connect(f"127.0.0.{n + 1}").request("/events") for n in range(4)
        ]
        refused = server.connect("127.0.0.9").request("/outcomes").response
        assert refused is not None
        self.assertEqual(refused.status, 503)
        self.assertEqual(refused.body, b"too many streams; retry in 5 s\n")
        self.assertEqual(ledger.rejections, {Rejection.TOO_MANY_STREAMS: 1})
        # Streams are not pending work: answers are still taken on.
        answer = server.connect("127.0.0.9").request("/?delay=1")
        server.advance(1)
        self.assertEqual(answer.response.status, 200)  # type: ignore[union-attr]
        self.assertEqual([status(c) for c in opened], [200] * 4)

    def test_nothing_is_kept_for_clients_that_left(self) -> None:
        server, ledger = serve(max_streams_per_client=8, max_pending_per_client=8)
        clients = [
            server.connect(f"10.0.0.{n}").request(path)
            for n in range(100)
            for path in ("/events", "/outcomes", "/slow")
        ]
        self.assertEqual(ledger.limits.streams, 200)
        for client in clients[::2]:
            client.close()
        for client in clients[1::2]:
            client.reset()
        server.advance(3)
        self.assertEqual(ledger.limits.streams, 0)
        self.assertEqual(ledger.limits._streams, {})
        self.assertEqual(ledger.limits._pending, {})
        self.assertEqual(ledger.pending, 0)


class PendingPerClientTests(SynchronousTestCase):
    def test_one_client_waits_for_its_share_of_answers(self) -> None:
        server, ledger = serve(max_pending_per_client=2)
        held = [server.connect("127.0.0.1").request("/slow") for _ in range(2)]
        refused = server.connect("127.0.0.1").request("/slow").response
        assert refused is not None
        self.assertEqual(
            (refused.status, refused.body),
            (429, b"too many pending requests from this client; retry in 1 s\n"),
        )
        other = server.connect("127.0.0.2").request("/slow")
        self.assertEqual(ledger.rejections, {Rejection.CLIENT_PENDING: 1})
        # Its streams are another pool.
        self.assertEqual(status(server.connect("127.0.0.1").request("/events")), 200)
        server.advance(2)
        self.assertEqual(
            [c.response.status for c in [*held, other]],  # type: ignore[union-attr]
            [200] * 3,
        )
        # Answered: its places are free again.
        again = [server.connect("127.0.0.1").request("/slow") for _ in range(2)]
        server.advance(2)
        self.assertEqual([c.response.status for c in again], [200, 200])  # type: ignore[union-attr]
        self.assertEqual(ledger.limits.pending_of("127.0.0.1"), 0)

    def test_an_interrupted_request_gives_its_place_back(self) -> None:
        server, ledger = serve(max_pending_per_client=1)
        server.get("/slow").reset()
        server.get("/slow").close()
        self.assertEqual(ledger.rejected, 0)
        self.assertEqual(ledger.interrupted, 2)

    def test_no_cap_without_limits(self) -> None:
        server, ledger = serve()
        for _ in range(50):
            server.get("/slow")
        for _ in range(50):
            server.get("/events")
        self.assertEqual(ledger.rejected, 0)
        self.assertEqual(ledger.pending, 100)


class LimitsTests(SynchronousTestCase):
    def test_caps_are_whole_numbers_or_none(self) -> None:
        for bad in (0, -1, 1.5, True, "8"):
            with self.assertRaises(ValueError):
                Limits(max_streams=bad)  # type: ignore[arg-type]
        self.assertIsNone(Limits(max_pending_per_client=None).max_pending_per_client)

    def test_an_embedded_event_stream_uses_its_ledgers_limits(self) -> None:
        clock = Clock()
        ledger = Ledger(clock, limits=Limits(max_pending=1, max_streams_per_client=2))
        server = InMemoryServer(
            EventStreamResource(tick=1, clock=clock, ledger=ledger), clock=clock
        )
        opened = [server.get("/") for _ in range(2)]
        self.assertEqual(server.get("/").response.status, 429)  # type: ignore[union-attr]
        self.assertEqual([status(c) for c in opened], [200, 200])
        # max_pending 1 did not count them.
        self.assertEqual(ledger.limits.admit(), None)


class AdmissionTests(SynchronousTestCase):
    """
    L{Limits} alone: what it admits, as requests begin and end in it.
    """

    def request(self, host: str) -> IRequest:
        request = DummyRequest([b""])
        request.client = IPv4Address("TCP", host, 1234)
        return cast(IRequest, request)

    def test_pending_work_and_streams_are_two_pools(self) -> None:
        limits = Limits(max_pending=1, max_streams=1)
        a = self.request("10.0.0.1")
        work = limits.began(a, False)
        self.assertIs(limits.admit(a), Rejection.OVERLOADED)
        self.assertIsNone(limits.admit(a, stream=True))
        stream = limits.began(a, True)
        self.assertIs(limits.admit(a, stream=True), Rejection.TOO_MANY_STREAMS)
        limits.ended(work)
        limits.ended(stream)
        self.assertEqual((limits.pending, limits.streams), (0, 0))
        self.assertIsNone(limits.admit(a))

    def test_one_clients_share_and_not_anothers(self) -> None:
        limits = Limits(max_pending_per_client=1, max_streams_per_client=1)
        a, b = self.request("10.0.0.1"), self.request("10.0.0.2")
        counted = [limits.began(a, False), limits.began(a, True)]
        self.assertIs(limits.admit(a), Rejection.CLIENT_PENDING)
        self.assertIs(limits.admit(a, stream=True), Rejection.CLIENT_STREAMS)
        self.assertIsNone(limits.admit(b))
        self.assertIsNone(limits.admit(b, stream=True))
        for c in counted:
            limits.ended(c)
        # A client at zero is forgotten: a flood from many addresses leaves
        # nothing behind.
        self.assertEqual(
            (limits.pending_of("10.0.0.1"), limits.streams_of("10.0.0.1")), (0, 0)
        )
        self.assertEqual((limits._pending, limits._streams), ({}, {}))

    def test_closed_refuses_everything(self) -> None:
        limits = Limits()
        self.assertFalse(limits.closing)
        limits.close()
        self.assertTrue(limits.closing)
        self.assertIs(limits.admit(), Rejection.SHUTTING_DOWN)
        self.assertIs(limits.admit(stream=True), Rejection.SHUTTING_DOWN)

    def test_max_pending_may_be_zero_but_not_less(self) -> None:
        self.assertIs(Limits(max_pending=0).admit(), Rejection.OVERLOADED)
        with self.assertRaises(ValueError) as caught:
            Limits(max_pending=-1)
        self.assertIn("max_pending", str(caught.exception))


class _Store:
    """
    A L{twisted_close.ledger.LimitCounts} in a dictionary, with one client
    said to hold C{others} more in another process.
    """

    def __init__(self) -> None:
        self.counts: dict[tuple[bool, str | None], int] = {}

    def total(self, stream: bool) -> int:
        return self.counts.get((stream, None), 0)

    def of(self, stream: bool, client: str) -> int:
        return self.counts.get((stream, client), 0)

    def add(self, stream: bool, client: str | None, step: int) -> None:
        for key in [(stream, None)] + (
            [(stream, client)] if client is not None else []
        ):
            self.counts[key] = self.counts.get(key, 0) + step


class SharedStoreTests(SynchronousTestCase):
    """
    With a store, every count is the store's: what other processes hold
    in it counts against the caps here.
    """

    def request(self, host: str) -> IRequest:
        return AdmissionTests.request(self, host)  # type: ignore[arg-type]

    def test_counts_held_elsewhere_count_here(self) -> None:
        store = _Store()
        limits = Limits(
            max_pending=3,
            max_streams=2,
            max_pending_per_client=2,
            max_streams_per_client=1,
            counts=store,
        )
        a, b = self.request("10.0.0.1"), self.request("10.0.0.2")
        # Another process holds one of a's pending answers and a's stream.
        store.add(False, "10.0.0.1", 1)
        store.add(True, "10.0.0.1", 1)
        self.assertEqual((limits.pending, limits.streams), (1, 1))
        self.assertEqual(
            (limits.pending_of("10.0.0.1"), limits.streams_of("10.0.0.1")), (1, 1)
        )
        self.assertIs(limits.admit(a, stream=True), Rejection.CLIENT_STREAMS)
        first = limits.began(a, False)
        self.assertIs(limits.admit(a), Rejection.CLIENT_PENDING)
        self.assertIsNone(limits.admit(b))
        second = limits.began(b, False)
        self.assertIs(limits.admit(b), Rejection.OVERLOADED)
        stream = limits.began(b, True)
        self.assertIs(limits.admit(b, stream=True), Rejection.TOO_MANY_STREAMS)
        for counted in (first, second, stream):
            limits.ended(counted)
        self.assertEqual(
            store.counts,
            {
                (False, None): 1,
                (False, "10.0.0.1"): 1,
                (False, "10.0.0.2"): 0,
                (True, None): 1,
                (True, "10.0.0.1"): 1,
                (True, "10.0.0.2"): 0,
            },
        )

    def test_a_cap_that_is_off_costs_no_client_count(self) -> None:
        store = _Store()
        limits = Limits(counts=store)
        a = self.request("10.0.0.1")
        counted = [
            limits.began(a, False),
            limits.began(a, True),
            limits.began(None, True),
        ]
        self.assertEqual(store.counts, {(False, None): 1, (True, None): 2})
        for c in counted:
            limits.ended(c)
        self.assertEqual(store.counts, {(False, None): 0, (True, None): 0})
        self.assertIsNone(limits.admit(a))
