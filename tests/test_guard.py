"""
The connection guard on a Clock through real channels in memory: the read
timeout, freeing descriptors oldest first, failed accepts logged once a
second, and how a peer that stopped responding is told from a reset.
"""

from __future__ import annotations

import socket

import twisted.web.http
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogEvent, Logger, capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase
from twisted.web._http2 import H2Connection
from twisted.web.server import Site

from twisted_close import (
    ConnectionGuard,
    Ending,
    Ledger,
    Rejection,
    classify,
    guard_connections,
)
from twisted_close._connection import ConnectionWatch
from twisted_close._guard import guard_of, set_peer_timeout
from twisted_close._twisted.channel import http11_channel, network_producer
from twisted_close._twisted.failures import PeerTimedOut
from twisted_close._twisted.reactor import accept_failure
from twisted_close._twisted.tcp import peer_timed_out, watch_peer_timeout
from twisted_close.closedemo import tap
from twisted_close.testing import Connection, InMemoryServer

from .helpers import demo_server, lines
from .twisted_pins import Holding, h2_site_connection


def serve(
    read_timeout: float | None = 20.0, idle_timeout: float = 60.0
) -> tuple[InMemoryServer, Ledger, ConnectionGuard]:
    server, ledger = demo_server(
        30, read_timeout=read_timeout, idle_timeout=idle_timeout
    )
    guard = guard_of(server.site)
    assert guard is not None
    return server, ledger, guard


class ConnectionEndTests(SynchronousTestCase):
    def test_an_ended_connection_lets_go_of_its_watch(self) -> None:
        # Its channel and its connection's watch hold each other; with no
        # deliveries watched ("written"), the guard hears of the end.
        server, ledger = demo_server(30, delivery="written")
        client = server.get("/?delay=0")
        server.advance(0)
        self.assertEqual(ledger.completed, 1)
        connection = network_producer(http11_channel(client.channel))
        assert isinstance(connection, ConnectionWatch)
        self.assertIsNotNone(connection.watch)
        client.close()
        self.assertIsNone(connection.watch)


class ReadTimeoutTests(SynchronousTestCase):
    def trickle(self, server: InMemoryServer, client: Connection, seconds: int) -> None:
        for n in range(seconds):
            client.send(b"X-Trickle-%d: 1\r\n" % (n,))
            server.advance(1)

    def test_a_head_that_trickles_is_cut_with_408_at_the_read_timeout(self) -> None:
        server, ledger, _ = serve()
        client = server.connect()
        client.send(b"GET /slow HTTP/1.1\r\n", b"GET")
        server.advance(1)
        # A line a second resets Twisted's idle timer every time.
        self.trickle(server, client, 18)
        self.assertFalse(client.closed_by_server)
        self.assertIsNone(client.response)
        self.trickle(server, client, 1)
        response = client.response
        assert response is not None
        self.assertEqual(response.status, 408)
        self.assertEqual(response.body, b"request not received within 20 s\n")
        self.assertEqual(response.header("connection"), "close")
        self.assertTrue(client.closed_by_server)
        self.assertEqual(ledger.rejections[Rejection.READ_TIMEOUT], 1)
        self.assertEqual(ledger.snapshot()["rejected"], 1)
        self.assertEqual((ledger.pending, ledger.interrupted), (0, 0))

    def test_408s_are_in_the_metrics(self) -> None:
        from prometheus_client import generate_latest

        from twisted_close.metrics import metrics_registry

        server, ledger, _ = serve(read_timeout=2)
        registry = metrics_registry(ledger)
        server.connect().send(b"GET / HTTP/1.1\r\n", b"GET")
        server.advance(2)
        self.assertIn(
            'twisted_close_requests_rejected_total{reason="read_timeout"} 1.0',
            generate_latest(registry).decode(),
        )

    def test_the_clock_starts_at_the_first_byte_even_of_a_partial_line(self) -> None:
        server, _, _ = serve(read_timeout=5)
        client = server.connect()
        server.advance(30)  # connected, silent: the idle timeout's business
        self.assertFalse(client.closed_by_server)
        client.send(b"GE", b"GET")
        server.advance(4.9)
        client.send(b"T / HTTP/1.1\r\n")
        self.assertIsNone(client.response)
        server.advance(0.1)
        response = client.response
        assert response is not None
        self.assertEqual(response.status, 408)

    def test_a_body_that_trickles_is_cut_too(self) -> None:
        server, ledger, _ = serve(read_timeout=5)
        client = server.connect()
        client.send(
            b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n",
            b"POST",
        )
        for _ in range(5):
            client.send(b"x")
            server.advance(1)
        response = client.response
        assert response is not None
        self.assertEqual(response.status, 408)
        self.assertEqual(ledger.rejections[Rejection.READ_TIMEOUT], 1)

    def test_pending_answers_and_idle_keep_alives_are_not_cut(self) -> None:
        server, ledger, _ = serve(read_timeout=5)
        pending = server.get("/?delay=30")
        kept = server.get("/?delay=1")
        server.advance(29)
        self.assertFalse(pending.closed_by_server)
        self.assertIsNone(pending.response)
        # Answered at 1 s, then idle for 28 s on a kept-alive connection.
        self.assertFalse(kept.closed_by_server)
        kept.request("/?delay=0")
        server.advance(0)
        self.assertEqual([r.status for r in kept.responses], [200, 200])
        server.advance(1)
        assert pending.response is not None
        self.assertEqual(pending.response.status, 200)
        self.assertEqual(ledger.rejections[Rejection.READ_TIMEOUT], 0)

    def test_each_request_on_a_connection_gets_its_own_time(self) -> None:
        server, _, _ = serve(read_timeout=5)
        client = server.get("/?delay=0")
        server.advance(4)
        client.send(b"GET /?delay=0 HTTP/1.1\r\n", b"GET")
        server.advance(4)
        client.send(b"Host: localhost\r\n\r\n")
        server.advance(0)
        self.assertEqual([r.status for r in client.responses], [200, 200])
        self.assertFalse(client.closed_by_server)

    def test_no_read_timeout_leaves_a_trickle_alone(self) -> None:
        server, _, _ = serve(read_timeout=None)
        client = server.connect()
        client.send(b"GET / HTTP/1.1\r\n", b"GET")
        self.trickle(server, client, 40)
        self.assertFalse(client.closed_by_server)


class FreeingDescriptorsTests(SynchronousTestCase):
    def test_idle_and_head_sending_connections_go_first_oldest_first(self) -> None:
        server, ledger, guard = serve()
        guard.room = 4
        idle = server.connect()
        pending = server.get("/?delay=30")
        stream = server.get("/events")
        heading = server.connect()
        heading.send(b"GET / HTTP/1.1\r\n", b"GET")
        self.assertEqual(guard.open, 4)
        with capturedLogs() as events:
            newcomer = server.connect()
            server.advance(0)
        self.assertTrue(idle.closed_by_server)
        self.assertFalse(heading.closed_by_server)
        self.assertEqual(guard.freed, 1)
        newcomer.request("/?delay=0")
        server.advance(0)
        self.assertEqual(newcomer.response and newcomer.response.status, 200)
        with capturedLogs() as more:
            server.connect()
            server.advance(0)
        self.assertTrue(heading.closed_by_server)
        # Pending answers and live streams are kept.
        self.assertFalse(pending.closed_by_server)
        self.assertFalse(stream.closed_by_server)
        self.assertEqual(ledger.pending, 2)
        [line] = lines(events, "Descriptors short")
        self.assertEqual(
            line,
            "Descriptors short: closed 1 idle connections, oldest first "
            "(4 open, room for 4)",
        )
        # At most a line a second: the second one waits for its second.
        self.assertEqual(lines(more, "Descriptors short"), [])
        with capturedLogs() as later:
            server.advance(1)
        self.assertEqual(len(lines(later, "Descriptors short: closed 1 ")), 1)

    def test_an_answer_still_on_its_way_out_is_kept(self) -> None:
        server, _, guard = serve()
        guard.room = 1
        slow_reader = server.get("/?delay=0")
        server.advance(0)
        # The client reads slowly: the transport asked the channel to wait.
        http11_channel(slow_reader.channel).pauseProducing()
        server.connect()
        self.assertFalse(slow_reader.closed_by_server)
        self.assertEqual(guard.freed, 0)
        # Nothing to free: the next look waits a moment, then looks again.
        http11_channel(slow_reader.channel).resumeProducing()
        server.connect()
        self.assertEqual(guard.freed, 0)
        server.advance(0.05)
        server.connect()
        self.assertTrue(slow_reader.closed_by_server)
        self.assertEqual(guard.freed, 1)

    def test_with_none_to_free_the_newcomer_is_closed_and_the_room_holds(
        self,
    ) -> None:
        server, ledger, guard = serve()
        guard.room = 2
        pending = [server.get("/?delay=30"), server.get("/?delay=30")]
        with capturedLogs() as events:
            newcomers = [server.connect() for _ in range(3)]
            server.advance(0)
        # Kept, each would hold a descriptor until accept fails (EMFILE).
        self.assertTrue(all(c.closed_by_server for c in newcomers))
        self.assertEqual(guard.open, 2)
        self.assertEqual((guard.freed, guard.refused), (0, 3))
        self.assertFalse(any(c.closed_by_server for c in pending))
        self.assertEqual(ledger.pending, 2)
        [line] = lines(events, "Descriptors short")
        # Said as the first newcomer goes (over a transport in memory its
        # close ends on the next turn: counted open until then).
        self.assertEqual(
            line,
            "Descriptors short: closed 0 idle connections, oldest first; "
            "1 new ones closed as soon as accepted, none being idle "
            "(3 open, room for 2)",
        )
        with capturedLogs() as later:
            server.advance(1)
        self.assertEqual(
            len(
                lines(
                    later,
                    "Descriptors short: closed 0 idle connections, "
                    "oldest first; 2 new ones",
                )
            ),
            1,
        )
        # Room again once an answer is done: the next one is served.
        server.advance(30)
        newcomer = server.get("/?delay=0")
        server.advance(0)
        self.assertEqual(newcomer.response and newcomer.response.status, 200)

    def test_nothing_is_closed_while_there_is_room(self) -> None:
        server, _, guard = serve()
        guard.room = 10
        clients = [server.connect() for _ in range(10)]
        server.advance(0)
        self.assertFalse(any(c.closed_by_server for c in clients))
        self.assertEqual(guard.freed, 0)
        clients[0].close()
        server.advance(0)
        self.assertEqual(guard.open, 9)


class _Port:
    """What the guard touches of a tcp.Port."""

    connected = True
    disconnecting = False

    def __init__(self, observer: object) -> None:
        self._logger = Logger(namespace="twisted.internet.tcp.Port", observer=observer)  # type: ignore[arg-type]
        self.reading = True

    def stopReading(self) -> None:
        self.reading = False

    def startReading(self) -> None:
        self.reading = True


class AcceptFailureTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server, _, self.guard = serve()
        self.forwarded: list[LogEvent] = []
        self.port = _Port(self.forwarded.append)
        self.guard.watch_port(self.port)

    def emfile(self, n: int) -> None:
        # What tcp._accept logs when the reserved descriptor lets it accept
        # and close the clients it cannot serve.
        logger = self.port._logger
        for i in range(n):
            logger.info("EMFILE encountered; releasing reserved file descriptor.")
            logger.info("EMFILE recovery: Closed socket from {address}", address=i)
            logger.info("Re-reserving EMFILE recovery file descriptor.")

    def test_a_flood_of_failed_accepts_is_one_line_a_second(self) -> None:
        with capturedLogs() as events:
            self.emfile(500)
            self.server.advance(0.5)
            self.emfile(300)
            self.server.advance(0.5)
        self.assertEqual(
            lines(events, "Out of descriptors"),
            [
                "Out of descriptors: 1 connections could not be accepted "
                "(1 EMFILE); 0 open",
                "Out of descriptors: 799 connections could not be accepted "
                "(799 EMFILE); 0 open",
            ],
        )
        self.assertEqual(self.guard.turned_away, 800)
        self.assertEqual(self.forwarded, [])

    def test_a_failure_that_leaves_the_client_waiting_pauses_accepting(self) -> None:
        with capturedLogs():
            self.port._logger.info(
                "Could not accept new connection ({acceptError})", acceptError="ENFILE"
            )
        self.assertFalse(self.port.reading)
        self.server.advance(0.1)
        self.assertTrue(self.port.reading)

    def test_other_lines_of_the_port_pass_through(self) -> None:
        self.port._logger.info("something else {x}", x=1)
        self.assertEqual([formatEvent(e) for e in self.forwarded], ["something else 1"])

    def test_the_formats_are_twisteds(self) -> None:
        from twisted.internet import tcp

        source = open(tcp.__file__).read()
        for text in [
            "EMFILE encountered;",
            '" releasing reserved file descriptor."',
            '"EMFILE recovery:" " Closed socket from {address}"',
            '"Could not accept new connection ({acceptError})"',
            "self._logger.namespace, self._logger.observer",
        ]:
            self.assertIn(text, source)
        event = {"log_format": "Could not accept new connection ({acceptError})"}
        self.assertEqual(accept_failure({**event, "acceptError": "ENFILE"}), "ENFILE")
        self.assertIsNone(accept_failure({"log_format": "Hello"}))


class _Transport:
    def __init__(self, inner: object = None) -> None:
        self.transport = inner


class PeerTimeoutTests(SynchronousTestCase):
    def test_a_peer_that_timed_out_has_its_own_ending(self) -> None:
        self.assertIs(classify(Failure(PeerTimedOut())), Ending.PEER_TIMED_OUT)
        self.assertEqual(Ending.PEER_TIMED_OUT.value, "peer stopped responding")
        self.assertEqual(Ending.PEER_TIMED_OUT.code, "peer_timed_out")
        self.assertTrue(Ending.PEER_TIMED_OUT.interrupted)
        self.assertFalse(Ending.PEER_TIMED_OUT.by_server)
        # A reset is still a reset.
        self.assertIs(classify(Failure(ConnectionLost())), Ending.CLIENT_RESET)

    def test_an_http2_stream_learns_it_from_the_tcp_transport(self) -> None:
        tcp = _Transport()
        stream = _Transport(_Transport(tcp))  # H2Stream -> TLS -> TCP
        stream.__dict__["_conn"] = None
        self.assertFalse(peer_timed_out(stream))
        tcp.__dict__["_twisted_close_peer_gave_up"] = True
        self.assertTrue(peer_timed_out(stream))

    def test_a_loss_with_nothing_unanswered_stays_what_twisted_said(self) -> None:
        with socket.socket() as sock:
            reasons: list[Failure] = []

            class Transport:
                socket = sock

                def connectionLost(self, reason: Failure) -> None:
                    reasons.append(reason)

            transport = Transport()
            watch_peer_timeout(transport)
            transport.connectionLost(Failure(ConnectionLost()))
            transport.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(
            [type(r.value) for r in reasons], [ConnectionLost, ConnectionDone]
        )

    def test_the_socket_options_are_set(self) -> None:
        with socket.socket() as sock:
            set_peer_timeout(sock, 10)
            tcp = socket.IPPROTO_TCP
            self.assertEqual(sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE), 1)
            self.assertEqual(sock.getsockopt(tcp, socket.TCP_KEEPIDLE), 5)
            self.assertEqual(sock.getsockopt(tcp, socket.TCP_KEEPINTVL), 1)
            self.assertEqual(sock.getsockopt(tcp, socket.TCP_USER_TIMEOUT), 9750)

    def test_library_users_guard_their_own_site(self) -> None:
        from twisted.web.resource import Resource
        from twisted.web.server import Site

        clock = Clock()
        ledger = Ledger(clock)
        site = Site(Resource(), reactor=clock)
        guard = guard_connections(site, read_timeout=5, ledger=ledger)
        self.assertIs(guard_of(site), guard)
        client = InMemoryServer(site, clock=clock).connect()
        client.send(b"GET / HTTP/1.1\r\n", b"GET")
        clock.advance(5)
        self.assertEqual(client.response and client.response.status, 408)
        self.assertEqual(ledger.rejections[Rejection.READ_TIMEOUT], 1)

    def test_a_site_is_guarded_once(self) -> None:
        from twisted.web.resource import Resource
        from twisted.web.server import Site

        site = Site(Resource(), reactor=Clock())
        guard = guard_connections(site)
        with self.assertRaises(ValueError) as caught:
            guard_connections(site)
        self.assertEqual(
            str(caught.exception), "guard_connections: this site is guarded already"
        )
        self.assertIs(guard_of(site), guard)


class OptionsTests(SynchronousTestCase):
    def parse(self, *argv: str) -> tap.Options:
        options = tap.Options()
        options.parseOptions(list(argv))
        return options

    def test_defaults_and_off(self) -> None:
        options = self.parse()
        self.assertEqual((options["peer-timeout"], options["read-timeout"]), (30, 20))
        options = self.parse("--peer-timeout", "0", "--read-timeout", "0")
        self.assertEqual(
            (options["peer-timeout"], options["read-timeout"]), (None, None)
        )
        settings = tap.site_settings(self.parse("--peer-timeout", "3"))
        # What the workers get too.
        self.assertEqual((settings["peer_timeout"], settings["read_timeout"]), (3, 20))

    def test_bad_values_name_the_option(self) -> None:
        for argv in [
            ("--peer-timeout", "-1"),
            ("--peer-timeout", "0.5"),
            ("--peer-timeout", "soon"),
            ("--peer-timeout", "3601"),
            ("--read-timeout", "x"),
            ("--read-timeout", "-2"),
        ]:
            with self.subTest(argv=argv):
                with self.assertRaises(UsageError) as caught:
                    self.parse(*argv)
                message = str(caught.exception)
                self.assertTrue(message.startswith(argv[0]), message)
                self.assertNotIn("\n", message)


class StartTests(SynchronousTestCase):
    def test_a_platform_without_the_options_says_so_once_and_serves(self) -> None:
        from unittest import mock

        from twisted_close import _guard
        from twisted_close.closedemo.descriptors import DescriptorRoom

        # The module _guard asks is the socket module itself.
        with mock.patch.object(socket, "TCP_USER_TIMEOUT", create=True):
            del socket.TCP_USER_TIMEOUT
            self.assertFalse(_guard.peer_timeout_supported())
            server, _, guard = serve()
            self.assertIsNone(guard.peer_timeout)
            with capturedLogs() as events:
                DescriptorRoom(guard, 10, 30.0).startService()
            client = server.get("/?delay=0")
            server.advance(0)
        self.assertEqual(client.response and client.response.status, 200)
        self.assertEqual(len(lines(events, "--peer-timeout: this platform lacks")), 1)
        self.assertIsNotNone(guard.room)


class MoreToFreeTests(SynchronousTestCase):
    def test_a_connection_sending_a_body_is_freed_oldest_first(self) -> None:
        server, ledger, guard = serve()
        guard.room = 3
        pending = server.get("/?delay=30")
        uploading = server.connect()
        uploading.send(b"POST /up HTTP/1.1\r\nHost: localhost\r\n", b"POST")
        uploading.send(b"Content-Length: 100\r\n\r\nsome of it")
        later = server.connect()
        later.send(b"POST /up HTTP/1.1\r\nHost: localhost\r\n", b"POST")
        later.send(b"Content-Length: 100\r\n\r\nsome of it")
        server.connect()
        server.advance(0)
        # The oldest upload went; nothing was answered for it yet.
        self.assertTrue(uploading.closed_by_server)
        self.assertEqual(uploading.transport.value(), b"")
        self.assertFalse(later.closed_by_server)
        self.assertFalse(pending.closed_by_server)
        self.assertEqual((guard.freed, ledger.pending), (1, 1))

    def test_an_idle_http2_connection_is_freed(self) -> None:
        clock = Clock()
        self.patch(twisted.web.http, "H2Connection", lambda: H2Connection(clock))
        site = Site(Holding(), reactor=clock)
        guard = guard_connections(site, clock=clock, peer_timeout=None)
        guard.room = 2

        def h2(*paths: str) -> StringTransport:
            return h2_site_connection(site, clock, *paths)[1]

        busy = h2("/held")
        idle = h2()
        h2()
        self.assertTrue(idle.disconnecting)
        self.assertFalse(busy.disconnecting)
        self.assertEqual(guard.freed, 1)


class ConnectionsPerClientTests(SynchronousTestCase):
    def test_past_the_cap_a_new_connection_is_closed_at_once(self) -> None:
        server, _, guard = serve()
        guard.max_per_client = 3
        with capturedLogs() as events:
            mine = [server.connect("127.0.0.1") for _ in range(5)]
            server.advance(0)
        self.assertEqual([c.closed_by_server for c in mine], [False] * 3 + [True] * 2)
        self.assertEqual(guard.over_cap, 2)
        [line] = lines(events, "Connections per client")
        self.assertEqual(
            line,
            "Connections per client: closed 1 new connections as soon as "
            "accepted, their address holding 3 already (1 from 127.0.0.1)",
        )
        # Another address has its own; the first gets one back when one goes.
        theirs = server.connect("127.0.0.2").request("/?delay=0")
        server.advance(0)
        self.assertEqual(theirs.response and theirs.response.status, 200)
        mine[0].close()
        server.advance(0)
        again = server.connect("127.0.0.1").request("/?delay=0")
        server.advance(0)
        self.assertEqual(again.response and again.response.status, 200)
        self.assertFalse(again.closed_by_server)
        with capturedLogs() as later:
            server.connect("127.0.0.1")
            server.advance(1)
        self.assertEqual(len(lines(later, "Connections per client: closed 2 ")), 1)

    def test_a_trusted_proxy_is_not_capped(self) -> None:
        server, _ = demo_server(
            max_connections_per_client=2, trusted_proxies=["127.0.0.1"]
        )
        guard = guard_of(server.site)
        assert guard is not None
        proxied = [server.connect("127.0.0.1") for _ in range(5)]
        other = [server.connect("127.0.0.2") for _ in range(3)]
        server.advance(0)
        self.assertFalse(any(c.closed_by_server for c in proxied))
        self.assertEqual([c.closed_by_server for c in other], [False, False, True])

    def test_bad_caps_are_refused(self) -> None:
        for bad in (0, -1, 1.5, True):
            with self.assertRaises(ValueError):
                ConnectionGuard(
                    clock=Clock(),
                    ledger=None,
                    peer_timeout=None,
                    read_timeout=None,
                    max_per_client=bad,  # type: ignore[arg-type]
                )
