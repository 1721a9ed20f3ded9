"""
The Twisted behaviours that L{twisted_close._twisted.channel} relies on (one
HTTP/1.x connection's channel), each pinned by a test that fails if a
Twisted upgrade changes it.
"""

from __future__ import annotations

import socket
from typing import Any

import twisted.web.http
from h2.config import H2Configuration
from h2.connection import H2Connection as H2Client
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import (
    IHalfCloseableDescriptor,
    IHalfCloseableProtocol,
    ITCPTransport,
)
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web._http2 import H2Connection
from twisted.web.http import HTTPChannel

from twisted_close._endings import Loss
from twisted_close._linux import TCP_CLOSE, TCP_CLOSE_WAIT, tcp_state
from twisted_close._twisted.channel import (
    NETWORK_PRODUCER,
    abort_transport,
    close_at_once,
    http11_channel,
    lose_connection,
    network_producer,
    nothing_unsent,
    on_half_close,
    receiving_request,
    replace_network_producer,
    request_in_hand,
    reusable,
    stays_open,
    stop_after_answer,
)
from twisted_close._twisted.failures import PeerTimedOut, loss_of
from twisted_close._twisted.request import (
    channel_of,
)

from .twisted_pins import (
    Holding,
    _big_post,
    _get,
    _h2_answering,
    _h2_in_memory,
    _Passing,
    _settled,
    _site_protocol,
    _tcp_connection,
    held,
)


class NetworkProducerTests(SynchronousTestCase):
    def test_the_network_producer_is_the_transport(self) -> None:
        protocol, transport = _site_protocol()
        channel = http11_channel(protocol)
        self.assertEqual(NETWORK_PRODUCER, "_networkProducer")
        # Set by connectionMade, on the instance (replacing it adds nothing).
        self.assertIn(NETWORK_PRODUCER, vars(channel))
        self.assertIs(network_producer(channel), transport)

    def test_the_channel_pauses_it_past_16_kib_behind_a_request(self) -> None:
        resource = Holding()
        protocol, transport = _site_protocol(resource)
        channel = http11_channel(protocol)
        self.assertEqual(HTTPChannel._optimisticEagerReadSize, 16 * 1024)
        passing = _Passing(transport)
        replace_network_producer(channel, passing)
        self.assertIs(network_producer(channel), passing)
        protocol.dataReceived(_get())
        self.assertEqual(passing.calls, [])
        protocol.dataReceived(_big_post())
        # Through the replacement alone: the transport was paused by it.
        self.assertEqual(passing.calls, ["pause"])
        self.assertEqual(transport.producerState, "paused")
        resource.requests[0].finish()
        self.assertEqual(passing.calls[:2], ["pause", "resume"])
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual(len(resource.requests), 2)

    def test_an_http2_stream_has_none(self) -> None:
        server, _, _ = _h2_in_memory()
        self.assertIsNone(network_producer(server.streams[1]))


class ChannelStateTests(SynchronousTestCase):
    def test_the_http11_channel_of_what_a_site_built(self) -> None:
        protocol, transport = _site_protocol()
        channel = http11_channel(protocol)
        self.assertIsInstance(channel, HTTPChannel)
        self.assertIs(channel, protocol._channel)
        self.assertIs(http11_channel(channel), channel)
        self.assertIs(channel.transport, transport)

    def test_no_http11_channel_once_alpn_chose_h2(self) -> None:
        clock = Clock()
        # The H2Connection it builds runs on our clock, not the global reactor.
        self.patch(twisted.web.http, "H2Connection", lambda: H2Connection(clock))
        protocol, transport = _site_protocol()
        untyped: Any = transport
        untyped.negotiatedProtocol = b"h2"
        client = H2Client(H2Configuration(client_side=True))
        client.initiate_connection()
        protocol.dataReceived(client.data_to_send())
        self.assertIsInstance(protocol._channel, H2Connection)
        self.assertIsNone(http11_channel(protocol))
        self.assertIsNone(http11_channel(protocol._channel))

    def test_receiving_a_request(self) -> None:
        protocol, _ = _site_protocol()
        channel = http11_channel(protocol)
        self.assertFalse(receiving_request(channel))
        # A line begun: LineReceiver._buffer.
        protocol.dataReceived(b"GET / HT")
        self.assertTrue(receiving_request(channel))
        # The request line in: __first_line is 0.
        protocol.dataReceived(b"TP/1.1\r\n")
        self.assertEqual(channel._HTTPChannel__first_line, 0)
        self.assertTrue(receiving_request(channel))
        # Whole and in hand: _handlingRequest.
        protocol.dataReceived(b"Host: localhost\r\n\r\n")
        self.assertTrue(channel._handlingRequest)
        self.assertFalse(receiving_request(channel))

    def test_a_request_in_hand(self) -> None:
        resource = Holding()
        protocol, _ = _site_protocol(resource)
        channel = http11_channel(protocol)
        self.assertFalse(request_in_hand(channel))
        protocol.dataReceived(_get())
        self.assertEqual(list(channel.requests), resource.requests)
        self.assertTrue(request_in_hand(channel))
        resource.requests[0].finish()
        self.assertFalse(request_in_hand(channel))

    def test_stays_open_is_decided_before_notify_finish_fires(self) -> None:
        # requestDone decides (and closes a connection that does not stay
        # open) before Request.finish fires notifyFinish()'s Deferreds.
        self.assertEqual(self._open_when_finished(b""), [(True, False)])
        closing = self._open_when_finished(b"Connection: close\r\n")
        self.assertEqual(closing, [(False, True)])
        self.assertFalse(stays_open(object()))

    def _open_when_finished(self, head: bytes) -> list[tuple[bool, bool]]:
        resource = Holding()
        protocol, transport = _site_protocol(resource)
        channel = http11_channel(protocol)
        protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: localhost\r\n" + head + b"\r\n")
        [request] = resource.requests
        seen: list[tuple[bool, bool]] = []
        request.notifyFinish().addCallback(
            lambda _: seen.append((stays_open(channel), transport.disconnecting))
        )
        request.finish()
        return seen

    def test_reusable_idle_or_sending_its_head_or_body(self) -> None:
        resource = Holding()
        protocol, transport = _site_protocol(resource)
        channel = http11_channel(protocol)
        self.assertTrue(reusable(channel))
        protocol.dataReceived(b"POST / HTTP/1.1\r\nContent-Length: 4\r\n")
        self.assertTrue(channel.line_mode)
        self.assertTrue(reusable(channel))
        # The body is read in raw mode: no answer is under way yet.
        protocol.dataReceived(b"\r\nab")
        self.assertFalse(channel.line_mode)
        self.assertFalse(channel._handlingRequest)
        self.assertEqual(resource.requests, [])
        self.assertTrue(reusable(channel))
        # Whole: the request is in hand.
        protocol.dataReceived(b"cd")
        self.assertTrue(channel._handlingRequest)
        self.assertFalse(reusable(channel))
        resource.requests[0].finish()
        self.assertTrue(reusable(channel))
        # An answer the transport is not taking yet.
        assert transport.producer is not None
        transport.producer.pauseProducing()
        self.assertTrue(channel._waitingForTransport)
        self.assertFalse(reusable(channel))

    def test_stop_after_answer_leaves_the_next_unread(self) -> None:
        resource = Holding()
        protocol, transport = _site_protocol(resource)
        channel = http11_channel(protocol)
        protocol.dataReceived(_get("/first") + _get("/second"))
        stop_after_answer(channel)
        self.assertFalse(channel.persistent)
        resource.requests[0].finish()
        self.assertEqual(len(resource.requests), 1)
        self.assertTrue(transport.disconnecting)

    def test_lose_connection_once_written(self) -> None:
        protocol, transport = _site_protocol()
        channel = http11_channel(protocol)
        lose_connection(channel)
        self.assertTrue(transport.disconnecting)
        lose_connection(object())  # nothing to lose: no error


class RealSocketTests(SynchronousTestCase):
    def test_close_at_once_frees_the_descriptor_before_it_returns(self) -> None:
        pair, connection, protocol = _tcp_connection(self)
        channel = http11_channel(protocol)
        lost: list[Failure] = []
        protocol.connectionLost = lost.append
        close_at_once(channel)
        self.assertEqual(pair.server.fileno(), -1)
        self.assertTrue(connection.disconnected)
        self.assertEqual(len(lost), 1)

    def test_reusable_not_while_an_answer_waits_in_the_tcp_buffer(self) -> None:
        _, connection, protocol = _tcp_connection(self)
        channel = http11_channel(protocol)
        self.assertEqual((connection.dataBuffer, connection._tempDataBuffer), (b"", []))
        self.assertTrue(reusable(channel))
        connection.write(b"an answer not yet sent")
        self.assertTrue(connection._tempDataBuffer)
        self.assertFalse(reusable(channel))

    def test_nothing_unsent_until_something_is_written(self) -> None:
        _, connection, protocol = _tcp_connection(self)
        self.assertTrue(nothing_unsent(connection))
        self.assertTrue(nothing_unsent(http11_channel(protocol).transport))
        connection.write(b"not yet sent")
        self.assertFalse(nothing_unsent(connection))

    def test_a_fin_and_a_reset_as_tcp_reads_them(self) -> None:
        # What loss_of relies on: ConnectionDone for a FIN, a plain
        # ConnectionLost for a reset.
        pair, connection, _ = _tcp_connection(self)
        pair.client.shutdown(socket.SHUT_WR)
        self.assertTrue(_settled(lambda: tcp_state(pair.server) == TCP_CLOSE_WAIT))
        self.assertIsInstance(connection.doRead(), ConnectionDone)
        pair, connection, _ = _tcp_connection(self)
        pair.reset_by_client()
        self.assertTrue(_settled(lambda: tcp_state(pair.server) == TCP_CLOSE))
        self.assertIs(type(connection.doRead()), ConnectionLost)
        self.assertIs(loss_of(Failure(ConnectionDone())), Loss.DONE)
        self.assertIs(loss_of(Failure(ConnectionLost())), Loss.RESET)
        self.assertIs(loss_of(Failure(PeerTimedOut())), Loss.PEER_TIMEOUT)
        self.assertIsNone(loss_of(None))

    def test_a_half_close_keeps_the_connection_for_the_answer(self) -> None:
        resource = Holding()
        _, connection, protocol = _tcp_connection(self, resource)
        channel = http11_channel(protocol)
        # Twisted's TCP transport offers the half-close; the protocol a Site
        # builds does not take it.
        self.assertTrue(IHalfCloseableDescriptor.providedBy(connection))
        self.assertTrue(ITCPTransport.providedBy(connection))
        self.assertIs(connection.protocol, protocol)
        self.assertFalse(IHalfCloseableProtocol.providedBy(protocol))
        halves: list[str] = []
        self.assertTrue(on_half_close(channel, lambda: halves.append("fin")))
        self.assertTrue(IHalfCloseableProtocol.providedBy(protocol))
        protocol.dataReceived(_get())
        connection.readConnectionLost(Failure(ConnectionDone()))
        self.assertEqual(halves, ["fin"])
        self.assertFalse(connection.disconnected)
        resource.requests[0].write(b"still answered")
        self.assertIn(b"still answered", b"".join(connection._tempDataBuffer))
        # Only this instance: the next connection's protocol is as before.
        _, other, other_protocol = _tcp_connection(self)
        self.assertFalse(IHalfCloseableProtocol.providedBy(other_protocol))
        other.readConnectionLost(Failure(ConnectionDone()))
        self.assertTrue(other.disconnected)
        # Not TCP: not done.
        self.assertFalse(
            on_half_close(http11_channel(_site_protocol()[0]), lambda: None)
        )


class AbortTransportTests(SynchronousTestCase):
    def test_abort_transport_drops_the_whole_connection(self) -> None:
        _server, _, transport, _, request = _h2_answering()
        aborted: list[bool] = []
        untyped: Any = transport
        untyped.abortConnection = lambda: aborted.append(True)
        abort_transport(channel_of(request))
        self.assertEqual(aborted, [True])
        # Over HTTP/1.1 the channel's own transport.
        _, _, client, held_request = held()
        aborted.clear()
        untyped = client.transport
        untyped.abortConnection = lambda: aborted.append(True)
        abort_transport(channel_of(held_request))
        self.assertEqual(aborted, [True])
