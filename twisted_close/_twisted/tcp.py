"""
A TCP transport: its socket through any wrapping, and a peer that stopped
responding told apart from a reset.

Each function says what Twisted behaviour it relies on; C{tests/test_twisted_tcp.py}
pins each of them.
"""

from __future__ import annotations

import _socket
import socket
from collections.abc import Callable
from typing import Any

from twisted.internet.error import ConnectionLost
from twisted.python.failure import Failure

from .._linux import acked_and_unacknowledged, bytes_acked, unanswered
from .failures import PeerTimedOut
from .request import transport_of

__all__ = [
    "ConnectionBytes",
    "connection_bytes",
    "connection_ended",
    "on_tcp_lost",
    "peer_timed_out",
    "tcp_socket",
    "tcp_transport_of",
    "unsent_bytes",
    "watch_peer_timeout",
]


class _ConnectionLost:
    """
    A C{connectionLost} put on one transport, that ends by calling the one
    it replaced: an object of two slots, where a closure, its cells and the
    bound method it wraps cost several times as much per connection.
    """

    __slots__ = ("_below", "_transport")

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        below = transport.connectionLost
        # The class's own is called through the class, not kept bound: a
        # bound method would cost more than this object.  (Not vars(): in
        # CPython it gives the transport a dictionary of its own.)
        own = getattr(type(transport), "connectionLost", None)
        self._below: Callable[[Failure], None] | None = (
            None if getattr(below, "__func__", None) is own else below
        )

    def _call_below(self, reason: Failure) -> None:
        transport = self._transport
        # Told once: the outermost wrapper lets go of the transport first,
        # or transport and wrapper would hold each other (a cycle left to
        # the cyclic GC, per connection, where a reset is freed at once).
        # Not through its __dict__: asked for, CPython makes the transport
        # one, of all its attributes (about 3 us).
        if transport.connectionLost is self:
            del transport.connectionLost
        if self._below is not None:
            self._below(reason)
        else:
            type(transport).connectionLost(transport, reason)


def tcp_socket(transport: object) -> socket.socket | None:
    """
    The TCP socket under C{transport}, through any wrapping protocols (TLS).

    Relies on C{TLSMemoryBIOProtocol.transport} and
    C{ProtocolWrapper.transport} being the transport below them, and on a
    TCP transport's C{getHandle()} being its socket.
    """
    for _ in range(8):
        if transport is None:
            return None
        get_handle = getattr(transport, "getHandle", None)
        if callable(get_handle):
            try:
                handle = get_handle()
            except AttributeError:
                # A closed TCP transport has dropped its socket.
                return None
            if isinstance(handle, socket.socket):
                return handle
        transport = getattr(transport, "transport", None)
    return None


_INET = (socket.AF_INET, socket.AF_INET6)
# socket.socket.family makes an AddressFamily member on every read, four
# Python calls; the C socket's own attribute under it is the plain number.
_family = _socket.socket.family.__get__


def tcp_transport_of(transport: object) -> Any:
    """
    The TCP transport under C{transport}: itself, or for TLS the one under
    C{TLSMemoryBIOProtocol} (whose C{getHandle()} is the TLS connection), or
    under a C{ProtocolWrapper} (whose C{getHandle()} is the socket of the
    transport under it); C{None} for anything else (a UNIX socket, a
    transport in memory).  Its C{getHandle()} is the socket.
    """
    for _ in range(4):
        handle = getattr(transport, "getHandle", lambda: None)()
        if isinstance(handle, socket.socket):
            if _family(handle) not in _INET:
                return None
            # A protocol wrapper (policies.ProtocolWrapper) answers with the
            # socket of the transport under it: that one writes to it.
            below = getattr(transport, "transport", None)
            if getattr(below, "getHandle", lambda: None)() is not handle:
                return transport
        transport = getattr(transport, "transport", None)
        if transport is None:
            return None
    return None


_PEER_GAVE_UP = "_twisted_close_peer_gave_up"


def watch_peer_timeout(transport: Any) -> None:
    """
    Make a peer that stopped responding end C{transport}'s connection with
    L{PeerTimedOut}, not the C{ConnectionLost} a reset also ends with.

    When C{TCP_USER_TIMEOUT} or keep-alive gives up, the kernel fails the
    socket with C{ETIMEDOUT} (or the ICMP error it had last, e.g.
    C{EHOSTUNREACH}), and Twisted's reactor hands the transport the very
    same C{Failure(ConnectionLost())} it hands for a reset: the errno is
    dropped in C{tcp.Connection.doRead}/C{writeSomeData} and in
    C{_disconnectSelectable}.  So this wraps the (TCP) transport's
    C{connectionLost}, which runs while the socket is still open, and asks
    the kernel (C{TCP_INFO}) whether keep-alive probes or retransmissions
    were still unanswered: a reset arrives when the peer does answer.
    Over HTTP/2 the streams hear of it through C{stopProducing} before the
    reason reaches the protocol: the mark left on the transport
    (L{peer_timed_out}) tells them.
    """
    sock = getattr(transport, "socket", None)
    if not isinstance(sock, socket.socket) or not hasattr(socket, "TCP_INFO"):
        return
    # An instance attribute: this one connection, no subclass to install.
    transport.connectionLost = _PeerTimeoutWatch(transport)


class _PeerTimeoutWatch(_ConnectionLost):
    """
    See L{watch_peer_timeout}.
    """

    __slots__ = ()

    def __call__(self, reason: Failure) -> None:
        transport = self._transport
        if type(reason.value) is ConnectionLost:
            # Gone once the socket is closed: told twice, it was.
            sock = getattr(transport, "socket", None)
            if sock is not None and unanswered(sock):
                setattr(transport, _PEER_GAVE_UP, True)
                reason = Failure(PeerTimedOut())
        self._call_below(reason)


def peer_timed_out(channel: object) -> bool:
    """
    Whether C{channel}'s connection (an C{HTTPChannel}'s, or an HTTP/2
    stream's) ended because its peer stopped responding (see
    L{watch_peer_timeout}).
    """
    transport = transport_of(channel)
    for _ in range(4):
        if transport is None:
            return False
        if getattr(transport, _PEER_GAVE_UP, False):
            return True
        transport = getattr(transport, "transport", None)
    return False


# -- What the peer's kernel acknowledged ---------------------------------------


def connection_bytes(transport: object) -> ConnectionBytes | None:
    """
    The L{ConnectionBytes} of the TCP connection under C{transport}
    (through TLS); C{None} for anything else (a UNIX socket, a transport in
    memory).
    """
    tcp = tcp_transport_of(transport)
    if tcp is None:
        return None
    return ConnectionBytes(tcp, None if tcp is transport else transport)


class ConnectionBytes:
    """
    What was written to one TCP connection and what its peer's kernel
    acknowledged: found once per connection, asked at the end of each
    answer.

    The offset just past the last byte written is what the kernel had taken
    when this was made (acknowledged or not, one C{TCP_INFO}), what Twisted
    handed it since (counted as it does, no system call per answer), and
    what Twisted still buffers.  Relies on C{FileDescriptor.doWrite} handing
    bytes to the kernel only through C{writeSomeData}, which returns the
    number taken (an exception instance when the connection is lost), and
    buffering the rest in C{dataBuffer} (from C{offset}) and
    C{_tempDataBuffer} (C{_tempDataLen} bytes); and on
    C{TLSMemoryBIOProtocol} writing each record to the transport below at
    once, but for application data it keeps in C{_appSendBuffer} until its
    handshake is done.  C{BufferingTLSTransport} holds small writes in its
    C{_aggregator} until the next reactor iteration: they are flushed into
    records first (as its own C{loseConnection} does).
    """

    __slots__ = ("_base", "_below", "_handed", "_sock", "_tcp", "_tls")

    def __init__(self, tcp: Any, tls: object) -> None:
        self._tcp = tcp
        self._sock: socket.socket = tcp.getHandle()
        self._tls = tls
        self._handed = 0
        self._below: Any = None
        counts = acked_and_unacknowledged(self._sock)
        # What the kernel took before the count began; None: not knowable.
        self._base = None if counts is None else counts[0] + counts[1]
        if counts is not None:
            # An instance attribute, this connection's alone (not a class
            # swap: CPython then gives the transport a dictionary of its own,
            # and every attribute Twisted reads of it costs more); let go of
            # by release(), or transport and counter would hold each other.
            self._below = tcp.writeSomeData
            tcp.writeSomeData = self._write

    def _write(self, data: bytes) -> object:
        taken = self._below(data)
        if type(taken) is int:
            self._handed += taken
        return taken

    def release(self) -> None:
        """
        Stop counting: the connection ended.
        """
        if self._below is not None:
            tcp = self._tcp
            # Only this one's own: a wrapper put over it is left in place.
            if tcp.writeSomeData == self._write:
                del tcp.writeSomeData
            self._below = None

    def written(self) -> int | None:
        """
        The byte offset just past the last byte written so far; C{None}
        where it cannot be known (no C{TCP_INFO}, TLS data not yet turned
        into records).
        """
        tls = self._tls
        if tls is not None:
            aggregator = getattr(tls, "_aggregator", None)
            if aggregator is not None:
                aggregator.flush()
            if getattr(tls, "_appSendBuffer", None):
                return None
        if self._base is None:
            return None
        return self._base + self._handed + _buffered(self._tcp)

    def handed(self) -> int | None:
        """
        The offset just past the last byte the kernel took: no byte beyond
        it can have been acknowledged.  No system call.
        """
        return None if self._base is None else self._base + self._handed

    def acked(self) -> int | None:
        """
        How many bytes the peer acknowledged; C{None} where it cannot be
        known (its socket closed, among others).
        """
        return bytes_acked(self._sock)


def on_tcp_lost(
    transport: object, lost: Callable[[Any, socket.socket, Failure], None]
) -> bool:
    """
    Call C{lost} with the TCP transport, its socket and the reason when the
    TCP connection
    under C{transport} ends, while its socket is still open (it is closed
    right after); say whether it could be arranged.

    Relies on C{tcp.Connection.connectionLost} closing the socket itself
    (C{_closeSocket}: C{shutdown()} then C{close()} for an orderly end, a
    reset for an abort): a wrapper put in its place runs first.
    """
    tcp = tcp_transport_of(transport)
    if tcp is None:
        return False
    # An instance attribute: this one connection, no subclass to install.
    tcp.connectionLost = _TellLost(tcp, lost)
    return True


class _TellLost(_ConnectionLost):
    """
    See L{on_tcp_lost}.
    """

    __slots__ = ("_lost",)

    def __init__(
        self, transport: Any, lost: Callable[[Any, socket.socket, Failure], None]
    ) -> None:
        super().__init__(transport)
        self._lost = lost

    def __call__(self, reason: Failure) -> None:
        sock = getattr(self._transport, "socket", None)
        if isinstance(sock, socket.socket):
            self._lost(self._transport, sock, reason)
        self._call_below(reason)


def connection_ended(transport: object) -> bool:
    """
    Whether the TCP connection under C{transport} (through TLS or a protocol
    wrapper) has ended; C{False} for a transport that does not say (one in
    memory).

    Relies on C{FileDescriptor.disconnected}, set by C{connectionLost}, and
    on the layers above it keeping the one below as C{transport}.
    """
    for _ in range(4):
        if transport is None:
            return False
        ended = getattr(transport, "disconnected", None)
        if ended is not None:
            return bool(ended)
        transport = getattr(transport, "transport", None)
    return False


def _buffered(tcp: Any) -> int:
    # What FileDescriptor holds: dataBuffer from offset, and _tempDataLen
    # bytes in _tempDataBuffer (see ConnectionBytes and unsent_bytes).
    return len(tcp.dataBuffer) - int(tcp.offset) + int(tcp._tempDataLen)


def unsent_bytes(transport: object) -> int:
    """
    How many bytes written to C{transport} Twisted still holds, not yet
    handed to the kernel: what a client that reads nothing makes the
    server keep in memory.  No system call: a bound checked often.

    Relies on C{FileDescriptor} buffering writes in C{dataBuffer} (from
    C{offset}) and C{_tempDataBuffer} (C{_tempDataLen} bytes), and on
    C{TLSMemoryBIOProtocol} keeping application data in C{_appSendBuffer}
    until its handshake is done and turning the rest into records written
    to the transport below (its C{transport}), and on
    C{BufferingTLSTransport} holding small writes in its C{_aggregator}
    (C{MAX_BUFFER_SIZE} less C{_bufferLeft} bytes) until the next turn.
    """
    held = 0
    for _ in range(4):
        if transport is None:
            break
        untyped: Any = transport
        aggregator = getattr(untyped, "_aggregator", None)
        if aggregator is not None:
            held += aggregator.MAX_BUFFER_SIZE - aggregator._bufferLeft
        waiting = getattr(untyped, "_appSendBuffer", None)
        if waiting:
            held += sum(len(data) for data in waiting)
        if getattr(untyped, "dataBuffer", None) is not None:
            return held + _buffered(untyped)
        transport = getattr(untyped, "transport", None)
    return held
