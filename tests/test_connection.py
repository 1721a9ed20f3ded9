"""
The watch of an HTTP/1.x connection, in memory on a L{Clock}: when it looks
at a connection Twisted stopped reading, and that it stops looking.  (What
it sees is tested over real sockets in C{test_tcp} and C{test_endings}.)
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http import HTTPChannel
from twisted.web.server import Site

from twisted_close import ConnectionPolicy, DelayedResource, Ledger
from twisted_close._connection import POLL_INTERVAL, ConnectionWatch
from twisted_close._twisted.channel import http11_channel, network_producer
from twisted_close._twisted.tcp import watch_peer_timeout

from .helpers import get_request
from .twisted_pins import _tcp_connection


def looks(clock: Clock) -> list[float]:
    return [
        call.getTime()
        for call in clock.getDelayedCalls()
        if getattr(getattr(call, "func", None), "__name__", "") == "_tick"
    ]


class PausedConnectionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.ledger = Ledger(self.clock)
        resource = DelayedResource(b"hello", 5, clock=self.clock, ledger=self.ledger)
        site = Site(resource, reactor=self.clock)
        self.protocol: Any = site.buildProtocol(None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def pipeline_past_the_eager_read_size(self, first: str) -> None:
        # Behind the first request, one answered at once (405): more bytes
        # than the channel reads ahead.
        body = b"x" * (2 * HTTPChannel._optimisticEagerReadSize)
        big = b"POST /big HTTP/1.1\r\nHost: localhost\r\n"
        big += b"Content-Length: %d\r\n\r\n" % len(body) + body
        self.protocol.dataReceived(get_request(first) + big)

    def test_no_look_while_reading(self) -> None:
        self.protocol.dataReceived(get_request("/first?delay=0.5"))
        self.assertEqual(self.transport.producerState, "producing")
        self.assertEqual(looks(self.clock), [])

    def test_a_look_a_second_on_the_given_clock_while_paused(self) -> None:
        self.pipeline_past_the_eager_read_size("/first?delay=3")
        self.assertEqual(self.transport.producerState, "paused")
        self.assertEqual(looks(self.clock), [POLL_INTERVAL])
        watch = self.protocol._channel._networkProducer
        self.assertIsInstance(watch, ConnectionWatch)
        self.assertTrue(watch.polling)

    def test_no_more_looks_once_it_reads_again(self) -> None:
        self.pipeline_past_the_eager_read_size("/first?delay=0.5")
        self.assertEqual(looks(self.clock), [POLL_INTERVAL])
        self.clock.advance(0.5)  # answered: the channel resumes reading
        self.assertEqual(self.transport.producerState, "producing")
        self.assertIn(b"hello", self.transport.value())
        self.assertIn(b" 405 ", self.transport.value())
        self.assertEqual(looks(self.clock), [])
        self.assertEqual(self.ledger.completed, 1)

    def test_no_socket_no_more_looks(self) -> None:
        # A transport without a TCP socket cannot be looked at: one look, done.
        self.pipeline_past_the_eager_read_size("/first?delay=3")
        self.clock.advance(POLL_INTERVAL)
        self.assertEqual(looks(self.clock), [])
        self.assertEqual(self.ledger.pending, 1)


class FreedAtOnceTests(SynchronousTestCase):
    def test_a_request_cut_short_leaves_no_cycle_to_collect(self) -> None:
        # Channel and connection watch, request watch and connection watch,
        # transport and its connectionLost wrapper hold each other while
        # the connection lives; once it is lost with the request in hand,
        # reference counting alone frees them (as it frees bare Twisted's).
        clock = Clock()
        resource = DelayedResource(b"hello", 5, clock=clock, ledger=Ledger(clock))
        pair, connection, protocol = _tcp_connection(self, resource)
        watch_peer_timeout(connection)
        protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        channel = http11_channel(protocol)
        self.assertIsInstance(network_producer(channel), ConnectionWatch)
        freed = weakref.ref(channel)
        gc.collect()
        gc.disable()
        self.addCleanup(gc.enable)
        pair.reset_by_client()
        connection.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(resource.ledger.interrupted, 1)
        del connection, protocol, channel
        self.assertIsNone(freed())


class ConnectionPolicyTests(SynchronousTestCase):
    def test_the_defaults(self) -> None:
        policy = ConnectionPolicy()
        self.assertEqual((policy.half_close, policy.stall_timeout), ("leave", 30.0))

    def test_a_bad_choice_is_refused_by_name(self) -> None:
        with self.assertRaises(ValueError) as caught:
            ConnectionPolicy(half_close="ignore")  # type: ignore[arg-type]
        self.assertIn("half_close", str(caught.exception))
        for bad in (0.0, -1.0, float("nan")):
            with self.assertRaises(ValueError) as caught:
                ConnectionPolicy(stall_timeout=bad)
            self.assertIn("stall_timeout", str(caught.exception))
