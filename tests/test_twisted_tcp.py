"""
The Twisted behaviours that L{twisted_close._twisted.tcp} relies on (TCP
transports and a peer that stopped responding), each pinned by a test that
fails if a Twisted upgrade changes it.
"""

from __future__ import annotations

import socket
from types import SimpleNamespace
from typing import Any

from twisted.internet import tcp
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.protocols.tls import BufferingTLSTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from twisted_close import Ending, classify
from twisted_close._twisted import tcp as tcp_module
from twisted_close._twisted.channel import (
    http11_channel,
)
from twisted_close._twisted.failures import PeerTimedOut
from twisted_close._twisted.request import (
    channel_of,
)
from twisted_close._twisted.tcp import (
    ConnectionBytes,
    connection_bytes,
    connection_ended,
    on_tcp_lost,
    peer_timed_out,
    tcp_socket,
    tcp_transport_of,
    unsent_bytes,
    watch_peer_timeout,
)

from .twisted_pins import (
    _h2_answering,
    _settled,
    _tcp_connection,
    _tls_pair,
    acknowledged,
    written_offset,
)


class PeerTimedOutTests(SynchronousTestCase):
    def test_a_peer_timeout_is_a_connection_lost_of_its_own(self) -> None:
        error = PeerTimedOut()
        self.assertIsInstance(error, ConnectionLost)
        self.assertEqual(str(error), "the peer stopped responding")
        self.assertIs(classify(Failure(error)), Ending.PEER_TIMED_OUT)

    def _reset_and_lost(self) -> tuple[Any, Any, list[Failure]]:
        """
        A watched connection reset by its client and told so: the
        connection, its protocol, and what the protocol was told.
        """
        pair, connection, protocol = _tcp_connection(self)
        watch_peer_timeout(connection)
        told: list[Failure] = []
        untyped: Any = protocol
        untyped.connectionLost = told.append
        pair.reset_by_client()
        connection.connectionLost(Failure(ConnectionLost()))
        return connection, protocol, told

    def test_a_reset_with_nothing_unanswered_stays_a_reset(self) -> None:
        _, protocol, told = self._reset_and_lost()
        [reason] = told
        self.assertIs(type(reason.value), ConnectionLost)
        self.assertFalse(peer_timed_out(http11_channel(protocol)))

    def test_told_twice_the_second_time_passes_through(self) -> None:
        connection, _, told = self._reset_and_lost()
        # The socket is gone: Twisted's own check ends it, as it would.
        connection.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(len(told), 1)

    def test_once_told_the_transport_lets_go_of_its_wrapper(self) -> None:
        # Otherwise transport and wrapper hold each other: a cycle per
        # connection that only the cyclic GC frees.
        connection, _, _ = self._reset_and_lost()
        self.assertNotIn("connectionLost", vars(connection))

    def test_what_the_transport_had_of_its_own_is_called(self) -> None:
        _, connection, _ = _tcp_connection(self)
        told: list[Failure] = []
        untyped: Any = connection
        untyped.connectionLost = told.append
        watch_peer_timeout(connection)
        self.assertIsNot(connection.connectionLost, told.append)
        reason = Failure(ConnectionDone())
        connection.connectionLost(reason)
        self.assertEqual(told, [reason])

    def test_the_mark_is_found_through_tls_and_http2(self) -> None:
        _pair, connection, protocol = _tcp_connection(self)
        channel = http11_channel(protocol)
        self.assertFalse(peer_timed_out(channel))
        untyped: Any = connection
        untyped._twisted_close_peer_gave_up = True
        self.assertTrue(peer_timed_out(channel))
        _server, _, transport, _, request = _h2_answering()
        self.assertFalse(peer_timed_out(channel_of(request)))
        untyped = transport
        untyped._twisted_close_peer_gave_up = True
        self.assertTrue(peer_timed_out(channel_of(request)))
        tls = _tls_pair()[0]
        tls.makeConnection(connection)
        self.assertTrue(peer_timed_out(SimpleNamespace(transport=tls)))


class TCPTransportTests(SynchronousTestCase):
    def test_tcp_transport_and_socket_through_tls(self) -> None:
        pair, connection, _ = _tcp_connection(self)
        self.assertIs(connection.getHandle(), pair.server)
        self.assertIs(tcp_transport_of(connection), connection)
        self.assertIs(tcp_socket(connection), pair.server)
        tls = _tls_pair()[0]
        tls.makeConnection(connection)
        # Its handle is the TLS connection; its transport is the TCP one.
        self.assertNotIsInstance(tls.getHandle(), socket.socket)
        self.assertIs(tls.transport, connection)
        self.assertIs(tcp_transport_of(tls), connection)
        self.assertIs(tcp_socket(tls), pair.server)
        # Not TCP: a UNIX socket, a transport in memory.
        self.assertIsNone(tcp_transport_of(StringTransport()))
        self.assertIsNone(tcp_socket(StringTransport()))
        left, right = socket.socketpair()
        self.addCleanup(left.close)
        self.addCleanup(right.close)
        self.assertIsNone(
            tcp_transport_of(tcp.Connection(left, Protocol(), MemoryReactor()))
        )

    def test_connection_ended_through_tls_and_wrappers(self) -> None:
        _, connection, _ = _tcp_connection(self)
        tls = _tls_pair()[0]
        tls.makeConnection(connection)
        self.assertFalse(connection_ended(connection))
        self.assertFalse(connection_ended(tls))
        connection.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(connection_ended(connection))
        self.assertTrue(connection_ended(tls))
        # A transport that does not say (one in memory): not taken for ended.
        self.assertFalse(connection_ended(SimpleNamespace(transport=None)))
        self.assertFalse(connection_ended(None))

    def test_a_closed_tcp_transport_has_no_socket(self) -> None:
        _, connection, _ = _tcp_connection(self)
        connection.connectionLost(Failure(ConnectionDone()))
        with self.assertRaises(AttributeError):
            connection.getHandle()
        self.assertIsNone(tcp_socket(connection))


class AcknowledgementTests(SynchronousTestCase):
    def test_the_offset_counts_what_twisted_still_buffers(self) -> None:
        # FileDescriptor.write buffers until the reactor's write pass:
        # dataBuffer (from offset) and _tempDataBuffer (_tempDataLen bytes).
        _pair, connection, _ = _tcp_connection(self)
        self.assertEqual((written_offset(connection), acknowledged(connection)), (0, 0))
        connection.write(b"x" * 1000)
        self.assertEqual(written_offset(connection), 1000)
        found = connection_bytes(connection)
        assert isinstance(found, ConnectionBytes)
        self.assertEqual((found.written(), found.acked()), (1000, 0))
        self.assertEqual(acknowledged(connection), 0)
        connection.doWrite()
        # Into the kernel, and on loopback acknowledged by the client's
        # kernel though its application read nothing.
        self.assertTrue(_settled(lambda: acknowledged(connection) == 1000))
        self.assertEqual(written_offset(connection), 1000)
        self.assertEqual((found.written(), found.acked()), (1000, 1000))
        self.assertIsNone(written_offset(StringTransport()))
        self.assertIsNone(acknowledged(StringTransport()))
        self.assertIsNone(connection_bytes(StringTransport()))
        # Once its socket is closed, what was written is still known, not
        # what was acknowledged.
        connection.connectionLost(Failure(ConnectionDone()))
        self.assertEqual((found.written(), found.acked()), (1000, None))

    def test_writes_are_counted_without_asking_the_kernel(self) -> None:
        # After the one TCP_INFO as it is made, the offset is counted from
        # what writeSomeData hands the kernel: asked again with the kernel's
        # answers hidden, it still follows the writes.
        _pair, connection, _ = _tcp_connection(self)
        connection.write(b"y" * 300)
        found = connection_bytes(connection)
        assert isinstance(found, ConnectionBytes)
        self.assertEqual((found.written(), found.handed()), (300, 0))
        connection.doWrite()
        self.assertEqual(found.handed(), 300)
        connection.write(b"z" * 200)
        self.patch(tcp_module, "acked_and_unacknowledged", lambda sock: 1 / 0)
        self.assertEqual(found.written(), 500)
        connection.doWrite()
        self.assertEqual(found.written(), 500)
        # Counted on this connection alone, and no more once released.
        found.release()
        self.assertNotIn("writeSomeData", vars(connection))
        connection.write(b"w" * 100)
        connection.doWrite()
        self.assertEqual(found.written(), 500)

    def test_under_a_protocol_wrapper_the_tcp_transport_is_counted(self) -> None:
        # policies.ProtocolWrapper answers getHandle() with the socket of the
        # transport under it: the writes to count are that transport's.
        _pair, connection, _ = _tcp_connection(self)
        wrapper = ProtocolWrapper(WrappingFactory(Factory()), Protocol())
        wrapper.makeConnection(connection)
        self.assertIs(tcp_transport_of(wrapper), connection)
        found = connection_bytes(wrapper)
        assert isinstance(found, ConnectionBytes)
        wrapper.write(b"v" * 100)
        connection.doWrite()
        wrapper.write(b"w" * 50)
        self.assertEqual((found.handed(), found.written()), (100, 150))

    def test_through_tls_the_offset_is_the_tcp_connections(self) -> None:
        _pair, connection, _ = _tcp_connection(self)
        tls = _tls_pair()[0]
        tls.makeConnection(connection)
        # Whatever TLS wrote below (a client's hello) is the TCP offset.
        buffered = sum(map(len, connection._tempDataBuffer))
        self.assertEqual(written_offset(tls), buffered)
        # A small write waits in BufferingTLSTransport's aggregator for the
        # next reactor iteration: it is flushed into TLS first.
        self.assertIsInstance(tls, BufferingTLSTransport)
        tls.write(b"early")
        self.assertEqual(tls._aggregator._buffer, [b"early"])
        offset = written_offset(tls)
        self.assertEqual(tls._aggregator._buffer, [])
        # Before its handshake TLS holds application data back itself, with
        # no offset yet.
        self.assertEqual(tls._appSendBuffer, [b"early"])
        self.assertIsNone(offset)

    def test_told_of_the_end_while_the_socket_is_open(self) -> None:
        # tcp.Connection.connectionLost closes the socket itself: the
        # wrapper runs first, and the reason is passed on.
        pair, connection, _protocol = _tcp_connection(self)
        told: list[tuple[object, int | None, type]] = []

        def lost(transport: object, sock: socket.socket, reason: Failure) -> None:
            told.append((transport, sock.fileno(), type(reason.value)))

        self.assertTrue(on_tcp_lost(connection, lost))
        fileno = pair.server.fileno()
        connection.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(told, [(connection, fileno, ConnectionDone)])
        self.assertEqual(pair.server.fileno(), -1)
        self.assertFalse(on_tcp_lost(StringTransport(), lost))


class UnsentBytesTests(SynchronousTestCase):
    def test_what_twisted_buffers_is_unsent(self) -> None:
        _, connection, _ = _tcp_connection(self)
        self.assertEqual(unsent_bytes(connection), 0)
        # Nothing runs the memory reactor: every write stays in Twisted.
        connection.write(b"x" * 1000)
        connection.writeSequence([b"y" * 10, b"z" * 5])
        self.assertEqual(unsent_bytes(connection), 1015)
        # Half handed to the kernel: dataBuffer from offset is what is left.
        connection.doWrite()
        self.assertEqual(unsent_bytes(connection), 0)

    def test_through_tls_small_writes_wait_in_the_aggregator(self) -> None:
        server, _, wrapped = _tls_pair()
        _, connection, _ = _tcp_connection(self)
        server.makeConnection(connection)
        assert wrapped.transport is not None
        self.assertIsInstance(wrapped.transport, BufferingTLSTransport)
        below = unsent_bytes(wrapped.transport)
        wrapped.transport.write(b"a" * 300)
        self.assertEqual(unsent_bytes(wrapped.transport), below + 300)

    def test_anything_else_holds_nothing(self) -> None:
        self.assertEqual(unsent_bytes(None), 0)
        self.assertEqual(unsent_bytes(StringTransport()), 0)
