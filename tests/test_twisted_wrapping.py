"""
The Twisted behaviours that L{twisted_close._twisted.wrapping} relies on
(wrapping the accepted protocol), each pinned by a test that fails if a
Twisted upgrade changes it.
"""

from __future__ import annotations

from typing import Any

import twisted.web.http
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web._http2 import H2Connection
from twisted.web.http import HTTPChannel
from twisted.web.server import Site

from twisted_close._twisted.wrapping import (
    ConnectionHooks,
    GuardedProtocol,
    guard_protocols,
)

from .twisted_pins import (
    Holding,
    _certificate,
    _get,
    _guarded_site,
    _Hooks,
    h2_site_connection,
)


class GuardedProtocolTests(SynchronousTestCase):
    def test_the_hooks_hear_of_the_connection_in_order(self) -> None:
        resource = Holding()
        site, hooks = _guarded_site(resource)
        protocol: Any = site.buildProtocol(None)
        transport = StringTransport()
        # As a port does.
        protocol.makeConnection(transport)
        # Made: before the protocol hears of it; heard: after.
        self.assertEqual(hooks.seen, [("made", False), ("heard", True)])
        protocol.dataReceived(_get())
        # A whole request read: nothing to tell.
        self.assertEqual(len(hooks.seen), 2)
        protocol.connectionLost(Failure(ConnectionDone()))
        # After the protocol heard: its request was told it was lost.
        self.assertEqual(hooks.seen[2:], [("lost", [(False, True)])])

    def test_reading_is_told_only_when_the_timer_must_change(self) -> None:
        site, hooks = _guarded_site()
        protocol: Any = site.buildProtocol(None)
        protocol.makeConnection(StringTransport())
        del hooks.seen[:]
        protocol.dataReceived(b"GET / HT")
        self.assertEqual(hooks.seen, [("reading", True)])
        # Told after the channel had the bytes (see test_receiving_a_request).
        protocol.dataReceived(b"TP/1.1\r\n")
        protocol.dataReceived(b"Host: localhost\r\n")
        self.assertEqual(len(hooks.seen), 1)
        protocol.dataReceived(b"\r\n")
        self.assertEqual(hooks.seen[1:], [("reading", False)])

    def test_each_protocol_is_twisteds_with_no_closure_of_its_own(self) -> None:
        plain: Any = Site(Holding(), reactor=Clock()).buildProtocol(None)
        site, _ = _guarded_site()
        guarded: Any = site.buildProtocol(None)
        # What twisted.web's own protocol factory builds, which the guarded
        # one builds as its subclass.
        self.assertIs(
            Site.protocol,
            twisted.web.http._genericHTTPChannelProtocolFactory,
        )
        self.assertIs(type(plain), twisted.web.http._GenericHTTPChannelProtocol)
        self.assertIs(type(plain._channel), HTTPChannel)
        self.assertIn(type(plain), type(guarded).__bases__)
        self.assertIsInstance(guarded, GuardedProtocol)
        self.assertIs(type(guarded._channel), HTTPChannel)
        self.assertIs(guarded.factory, site)
        # The same attributes: nothing per connection but the protocol.
        self.assertEqual(vars(guarded).keys(), vars(plain).keys())
        # One class for every connection of the site.
        self.assertIs(type(site.buildProtocol(None)), type(guarded))

    def test_any_other_protocol_has_its_class_changed(self) -> None:
        class Channel(HTTPChannel):
            pass

        hooks = _Hooks()
        untyped: Any = Site(Holding(), reactor=Clock())
        untyped.protocol = Channel
        guard_protocols(untyped, hooks)
        protocol: Any = untyped.buildProtocol(None)
        self.assertIsInstance(protocol, Channel)
        self.assertIsInstance(protocol, GuardedProtocol)
        protocol.makeConnection(StringTransport())
        protocol.dataReceived(b"GET / HTTP/1.1\r\n")
        self.assertEqual(
            hooks.seen, [("made", False), ("heard", True), ("reading", True)]
        )

    def test_no_read_timeout_no_reading(self) -> None:
        site, hooks = _guarded_site(read_timeout=None)
        protocol: Any = site.buildProtocol(None)
        protocol.makeConnection(StringTransport())
        protocol.dataReceived(b"GET / HT")
        self.assertEqual([kind for kind, _ in hooks.seen], ["made", "heard"])
        # Decided as each connection is made.
        hooks.read_timeout = 5.0
        protocol = site.buildProtocol(None)
        protocol.makeConnection(StringTransport())
        protocol.dataReceived(b"GET / HT")
        self.assertEqual(hooks.seen[-1], ("reading", True))

    def test_http2_is_not_read_timed(self) -> None:
        clock = Clock()
        # The H2Connection it builds runs on our clock, not the global reactor.
        self.patch(twisted.web.http, "H2Connection", lambda: H2Connection(clock))
        site, hooks = _guarded_site()
        protocol, _, _ = h2_site_connection(site, clock)
        self.assertIsInstance(protocol._channel, H2Connection)
        self.assertEqual([kind for kind, _ in hooks.seen], ["made", "heard"])

    def test_through_tls(self) -> None:
        site, hooks = _guarded_site()

        class TCP(StringTransport):
            def setTcpNoDelay(self, enabled: bool) -> None:
                pass

        server = TLSMemoryBIOFactory(_certificate().options(), False, site)
        tls: Any = server.buildProtocol(None)
        tls.makeConnection(TCP())
        self.assertEqual(hooks.seen, [("made", False), ("heard", True)])
        # The TLS layer is the transport the guarded protocol was made with.
        self.assertIs(tls.wrappedProtocol._channel.transport, tls)
        tls.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(hooks.seen[2], ("lost", []))


def test_the_guard_and_these_tests_speak_to_the_same_hooks() -> None:
    # The guard is one ConnectionHooks, the tests' stand-in another: the
    # annotation has mypy check the stand-in against the protocol, so these
    # pins cannot drift from what guard_protocols calls.
    from twisted.internet.task import Clock

    from twisted_close import ConnectionGuard

    stand_in: ConnectionHooks = _Hooks()
    guard: ConnectionHooks = ConnectionGuard(
        clock=Clock(), ledger=None, peer_timeout=None, read_timeout=None
    )
    for hooks in (stand_in, guard):
        assert all(
            callable(getattr(hooks, name))
            for name in ("made", "heard", "lost", "reading")
        )
