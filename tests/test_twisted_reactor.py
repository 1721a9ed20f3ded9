"""
The Twisted behaviours that L{twisted_close._twisted.reactor} relies on (the
reactor and its listening ports), each pinned by a test that fails if a
Twisted upgrade changes it.
"""

from __future__ import annotations

import asyncio
import errno
import os
from typing import Any, cast

from twisted.internet import tcp
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.error import ConnectionLost
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor
from twisted.logger import ILogObserver, LogEvent, Logger
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from twisted_close._twisted.reactor import (
    accept_failure,
    accept_few,
    asyncio_event_loop,
    leave_socket_open,
    reactor_cutting_connections,
    redirect_accept_log,
    tcp_endpoint_address,
)

from .twisted_pins import (
    _Closed,
    _Listener,
    _Reserve,
    _Socket,
)


class EndpointTests(SynchronousTestCase):
    def test_tcp_endpoints_say_their_address(self) -> None:
        reactor = MemoryReactor()
        v4 = TCP4ServerEndpoint(reactor, 8123, backlog=77, interface="127.0.0.1")
        self.assertEqual(tcp_endpoint_address(v4), ("127.0.0.1", 8123, 77))
        v6 = TCP6ServerEndpoint(reactor, 0, interface="::1")
        self.assertEqual(tcp_endpoint_address(v6), ("::1", 0, 50))


class AcceptFewTests(SynchronousTestCase):
    def test_a_port_takes_few_connections_each_time(self) -> None:
        # Three clients waiting on a real listening socket: Twisted's port
        # takes all three in one doRead, and after accept_few(port, 1) one
        # per doRead, however many it took before.
        import socket

        def port_with_clients(n: int) -> Any:
            listening = socket.socket()
            self.addCleanup(listening.close)
            listening.bind(("127.0.0.1", 0))
            listening.listen(8)
            listening.setblocking(False)
            for _ in range(n):
                client = socket.create_connection(listening.getsockname())
                self.addCleanup(client.close)
            built: list[Any] = []
            port: Any = tcp.Port(
                0, Factory.forProtocol(Protocol), reactor=MemoryReactor()
            )
            port.socket, port.fileno = listening, listening.fileno
            port.numberAccepts = 100  # as startListening sets it

            def transport(skt: socket.socket, *rest: object) -> None:
                # Counted and closed: no connection is wanted here.
                built.append(skt)
                skt.close()

            port.transport = transport
            port.built = built
            return port

        plain = port_with_clients(3)
        plain.doRead()
        self.assertEqual(len(plain.built), 3)
        few = port_with_clients(3)
        accept_few(few, 1)
        for taken in (1, 2, 3, 3):
            few.doRead()
            self.assertEqual((len(few.built), few.numberAccepts), (taken, 1))
        # Anything else is left alone.
        accept_few(object(), 1)


class AcceptLogTests(SynchronousTestCase):
    def port_failing(self, errors: list[int], clients: list[Any]) -> list[LogEvent]:
        port: Any = tcp.Port(0, Factory.forProtocol(Protocol), reactor=MemoryReactor())
        self.assertIsInstance(port._logger, Logger)
        events: list[LogEvent] = []
        self.assertTrue(redirect_accept_log(port, cast(ILogObserver, events.append)))
        self.patch(tcp, "_reservedFD", _Reserve())
        port.socket = _Listener(errors, clients)
        port.numberAccepts = 100  # as startListening sets it
        port.doRead()
        return events

    def test_emfile_turns_each_waiting_client_away(self) -> None:
        clients = [_Closed(), _Closed()]
        events = self.port_failing([errno.EMFILE], list(clients))
        self.assertTrue(all(client.closed for client in clients))
        self.assertEqual(
            [accept_failure(event) for event in events], ["", "EMFILE", "EMFILE", ""]
        )

    def test_enfile_leaves_the_client_waiting(self) -> None:
        events = self.port_failing([errno.ENFILE], [])
        self.assertEqual([accept_failure(event) for event in events], ["ENFILE"])

    def test_other_events_are_not_about_accepting(self) -> None:
        self.assertIsNone(accept_failure({"log_format": "Starting factory {f}"}))
        self.assertIsNone(accept_failure({}))

    def test_a_port_without_a_logger(self) -> None:
        self.assertFalse(redirect_accept_log(object(), cast(ILogObserver, print)))


class ReactorTests(SynchronousTestCase):
    def test_the_asyncio_reactors_loop(self) -> None:
        from twisted.internet.asyncioreactor import AsyncioSelectorReactor

        loop = asyncio.new_event_loop()
        self.addCleanup(loop.close)
        reactor = AsyncioSelectorReactor(loop)
        self.assertIs(reactor._asyncioEventloop, loop)
        self.assertIs(asyncio_event_loop(reactor), loop)
        self.assertIsNone(asyncio_event_loop(Clock()))
        self.assertIsNone(asyncio_event_loop(MemoryReactor()))

    def test_shutdown_stops_running_before_dropping_connections(self) -> None:
        from twisted.internet.selectreactor import SelectReactor

        reactor = SelectReactor()
        self.addCleanup(reactor.waker.connectionLost, None)
        pair = _Socket(self)
        told: list[tuple[bool, Failure]] = []

        class Selectable:
            def fileno(self) -> int:
                return pair.server.fileno()

            def doRead(self) -> None:
                pass

            def logPrefix(self) -> str:
                return "selectable"

            def connectionLost(self, reason: Failure) -> None:
                told.append((reactor_cutting_connections(reactor), reason))

        reactor.addReader(Selectable())
        reactor.running = True
        self.assertFalse(reactor_cutting_connections(reactor))
        reactor.fireSystemEvent("shutdown")
        [(cutting, reason)] = told
        self.assertTrue(cutting)
        # The same failure as a client's reset.
        self.assertIs(type(reason.value), ConnectionLost)


class LeaveSocketOpenTests(SynchronousTestCase):
    """
    A port Twisted made shuts its socket down at a stop (ending it for any
    process sharing it), unless told not to; an adopted one never does.
    """

    def test_a_port_it_made_is_shut_down_unless_told(self) -> None:
        made = tcp.Port(0, Factory(), interface="127.0.0.1")
        self.assertIs(made._shouldShutdown, True)
        leave_socket_open(made)
        self.assertIs(made._shouldShutdown, False)
        # Anything else is left alone.
        leave_socket_open(object())

    def test_a_socket_it_made_shut_down_ends_every_holder(self) -> None:
        import socket

        listening = socket.socket()
        self.addCleanup(listening.close)
        listening.bind(("127.0.0.1", 0))
        listening.listen(5)
        held = socket.socket(fileno=os.dup(listening.fileno()))
        self.addCleanup(held.close)
        listening.shutdown(socket.SHUT_RDWR)
        # Shut down once, closed for both: why the port must not.
        with self.assertRaises(OSError):
            socket.create_connection(listening.getsockname(), timeout=1).close()
