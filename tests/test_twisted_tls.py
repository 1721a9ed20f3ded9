"""
The Twisted behaviours that L{twisted_close._twisted.tls} relies on
(Twisted's TLS layer), each pinned by a test that fails if a Twisted upgrade
changes it.
"""

from __future__ import annotations

from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from twisted_close._twisted.tls import is_tls, keep_tls_tcp_reason, tls_tcp_reason

from .twisted_pins import (
    _tls_connected,
)


class TLSTests(SynchronousTestCase):
    def test_a_fin_and_a_reset_alike_are_a_bare_connection_lost(self) -> None:
        for tcp_reason in (ConnectionDone(), ConnectionLost()):
            server, wrapped = _tls_connected()
            self.assertTrue(is_tls(server))
            keep_tls_tcp_reason(server)
            self.assertIsNone(tls_tcp_reason(server))
            server.connectionLost(Failure(tcp_reason))
            assert wrapped.reason is not None
            self.assertIs(type(wrapped.reason.value), ConnectionLost)
            kept = tls_tcp_reason(server)
            assert kept is not None
            self.assertIs(kept.value, tcp_reason)

    def test_only_twisteds_tls_layer(self) -> None:
        self.assertFalse(is_tls(StringTransport()))
        transport = StringTransport()
        keep_tls_tcp_reason(transport)
        self.assertNotIn("connectionLost", vars(transport))
        self.assertIsNone(tls_tcp_reason(transport))
