"""
A request the reactor's shutdown cuts is the server's doing, even without a
GracefulDrain; nothing is watched before a request is, and a client that
leaves during a graceful drain's grace is still the client.

The real reactor's side (its own triggers drop the connections) is run in
a subprocess by C{tests/test_readme.py}.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable

from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from twisted_close import DelayedResource, Ending, Ledger
from twisted_close._shutdown import watch_shutdown
from twisted_close.testing import InMemoryServer


def shutdown_triggers(reactor: MemoryReactorClock) -> list[Callable[[], object]]:
    triggers = reactor.triggers.get("before", {}).get("shutdown", [])
    return [call for call, args, kwargs in triggers]


class ShutdownTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.reactor.running = True
        self.ledger = Ledger(self.reactor)
        resource = DelayedResource(
            "hello", delay=10, clock=self.reactor, ledger=self.ledger
        )
        self.server = InMemoryServer(resource, clock=self.reactor)

    def begin_shutdown(self) -> None:
        for trigger in shutdown_triggers(self.reactor):
            trigger()

    def test_a_reactor_is_watched_from_its_first_request_once(self) -> None:
        self.assertEqual(shutdown_triggers(self.reactor), [])
        self.server.get("/")
        self.server.get("/")
        self.assertEqual(len(shutdown_triggers(self.reactor)), 1)

    def test_a_request_cut_while_the_reactor_stops_is_the_servers(self) -> None:
        client = self.server.get("/")
        self.begin_shutdown()
        self.reactor.running = False  # the reactor's 'during' phase
        client.reset()  # disconnectAll: a plain ConnectionLost
        self.assertEqual(self.ledger.server_endings[Ending.SHUTDOWN], 1)
        self.assertEqual(self.ledger.interrupted, 0)

    def test_a_client_leaving_during_the_grace_is_the_client(self) -> None:
        client = self.server.get("/")
        self.begin_shutdown()  # 'before': a drain's grace, still running
        client.close()
        self.assertEqual(self.ledger.interruptions[Ending.CLIENT_CLOSED], 1)
        self.assertEqual(self.ledger.server_ended, 0)

    def test_a_reactor_not_running_before_its_shutdown_blames_no_one(self) -> None:
        self.reactor.running = False
        self.server.get("/").reset()
        self.assertEqual(self.ledger.interruptions[Ending.CLIENT_RESET], 1)

    def test_a_clock_is_never_shutting_down(self) -> None:
        self.assertFalse(watch_shutdown(Clock()).cutting_connections)

    def test_a_watched_reactor_is_not_kept_alive(self) -> None:
        reactor = MemoryReactorClock()
        watch_shutdown(reactor)
        gone = weakref.ref(reactor)
        watch_shutdown(Clock())  # no longer the last one asked about
        del reactor
        gc.collect()
        self.assertIsNone(gone())
