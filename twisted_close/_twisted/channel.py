"""
One HTTP/1.x connection's C{HTTPChannel}: what it pauses to stop reading, its
half-close, the request in hand, and closing it.

Each function says what Twisted behaviour it relies on; C{tests/test_twisted_channel.py}
pins each of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    ITCPTransport,
)
from twisted.python.failure import Failure
from zope.interface import alsoProvides

from .request import transport_of
from .tcp import tcp_transport_of, unsent_bytes

__all__ = [
    "NETWORK_PRODUCER",
    "abort_transport",
    "close_at_once",
    "http11_channel",
    "lose_connection",
    "network_producer",
    "nothing_unsent",
    "on_half_close",
    "receiving_request",
    "replace_network_producer",
    "request_in_hand",
    "reusable",
    "stop_after_answer",
]


NETWORK_PRODUCER = "_networkProducer"
"""The name of C{HTTPChannel}'s attribute that L{network_producer} reads."""


def network_producer(channel: object) -> Any:
    """
    What C{channel} pauses and resumes to stop and start reading its
    connection: for an HTTP/1.x C{HTTPChannel} whose connection is made, its
    transport (or what L{replace_network_producer} put there); C{None} for
    an HTTP/2 stream, whose connection is shared.

    Relies on C{HTTPChannel._networkProducer}, set by C{connectionMade}:
    the channel pauses and resumes its transport only through it, when more
    than C{_optimisticEagerReadSize} bytes are buffered behind the request
    in hand (paused), after every request (resumed), and when its
    transport's buffer is full between requests.
    """
    return getattr(channel, NETWORK_PRODUCER, None)


def replace_network_producer(channel: object, producer: object) -> None:
    """
    Have C{channel} pause and resume C{producer} instead, which must pass
    every call on to the one it replaces.  It takes the place of an
    attribute the channel has: the channel grows no bigger.
    """
    untyped: Any = channel
    untyped._networkProducer = producer


def on_half_close(channel: object, half_closed: Callable[[], None]) -> bool:
    """
    Have C{channel}'s TCP connection call C{half_closed} when the client
    shuts down its sending side (a FIN), keeping the connection open for
    the answer; say whether it could be done (plain TCP only).

    Twisted's TCP transport ends the whole connection on a FIN unless its
    protocol provides C{IHalfCloseableProtocol}; C{HTTPChannel} does not,
    and C{Site} wraps it in C{_GenericHTTPChannelProtocol}, so the protocol
    the transport holds (C{transport.protocol}) is made to provide it, this
    instance alone.
    """
    transport = getattr(channel, "transport", None)
    protocol = getattr(transport, "protocol", None)
    if protocol is None or not ITCPTransport.providedBy(transport):
        return False

    def read_connection_lost() -> None:
        half_closed()

    def write_connection_lost() -> None:
        # The server's own shutdown of its side: nothing to do.
        pass

    alsoProvides(protocol, IHalfCloseableProtocol)
    protocol.readConnectionLost = read_connection_lost
    protocol.writeConnectionLost = write_connection_lost
    return True


def request_in_hand(channel: object) -> bool:
    """
    Whether C{channel} has a request it has not finished answering.

    Relies on C{HTTPChannel.requests}, the queue of requests being answered.
    """
    return bool(getattr(channel, "requests", None))


def stop_after_answer(channel: object) -> None:
    """
    Read no more requests on C{channel}'s connection; close it once the
    request in hand is answered.

    Relies on C{HTTPChannel.persistent}, read by C{requestDone}: when false,
    the requests buffered behind are never parsed.
    """
    if hasattr(channel, "persistent"):
        channel.persistent = False


def stays_open(channel: object) -> bool:
    """
    Whether C{channel}'s connection is kept open for the next request once
    the request just finished is answered.

    Relies on C{HTTPChannel.persistent}, decided by C{requestDone} (which
    closes the connection when false) before C{Request.finish} fires
    C{notifyFinish()}'s Deferreds.
    """
    return bool(getattr(channel, "persistent", False))


def lose_connection(channel: object) -> None:
    """
    Close C{channel}'s connection once what was written has gone.
    """
    lose = getattr(channel, "loseConnection", None)
    if callable(lose):
        lose()


def abort_transport(channel: object) -> None:
    """
    Drop C{channel}'s connection at once, discarding what is unsent.
    """
    abort = getattr(transport_of(channel), "abortConnection", None)
    if callable(abort):
        abort()


def http11_channel(protocol: object) -> Any:
    """
    The C{HTTPChannel} behind a protocol a C{Site} built, or C{None} once it
    became HTTP/2 (or for any other protocol).

    Relies on C{_GenericHTTPChannelProtocol._channel}, replaced by an
    C{H2Connection} when ALPN chose h2, and on C{HTTPChannel._handlingRequest}
    being there (an C{H2Connection} has none).
    """
    channel = getattr(protocol, "_channel", protocol)
    return channel if hasattr(channel, "_handlingRequest") else None


def receiving_request(channel: Any) -> bool:
    """
    Whether the C{HTTPChannel} C{channel} has some of a request's head or
    body and not all of it yet.

    Relies on C{HTTPChannel._handlingRequest} (a request wholly received and
    in hand), its private C{__first_line} (0 once a request line arrived,
    until the request is whole) and C{LineReceiver._buffer} (a line begun).
    """
    if channel._handlingRequest:
        return False
    return channel._HTTPChannel__first_line == 0 or bool(channel._buffer)


def reusable(channel: Any) -> bool:
    """
    Whether C{channel} (an C{HTTPChannel}) may be closed to free its
    descriptor with no answer lost: idle between requests, or still
    sending its request's head or body (no answer is under way for it yet).

    Relies on C{HTTPChannel._handlingRequest} (a request wholly received
    and in hand: set before it is processed, cleared once it is answered),
    on C{HTTPChannel._waitingForTransport} and on what L{nothing_unsent}
    relies on.
    """
    if channel._handlingRequest:
        return False
    # An answer still on its way out (a client that reads slowly) is kept.
    if channel._waitingForTransport:
        return False
    return nothing_unsent(channel.transport)


def nothing_unsent(transport: object) -> bool:
    """
    Whether Twisted holds nothing written to C{transport} and not yet
    handed to the kernel (L{unsent_bytes}, TLS's buffers included).
    """
    return unsent_bytes(transport) == 0


def close_at_once(channel: Any) -> None:
    """
    Close C{channel}'s connection (an C{HTTPChannel}, or an C{H2Connection}
    with no stream open) now, its descriptor free before this
    returns (C{loseConnection} and C{abortConnection} close it on a later
    turn of the reactor, too late for an accept in the same turn).  Only for
    a connection with nothing left to write.

    Relies on C{tcp.Connection.connectionLost} closing the socket and
    telling the protocol (through C{TLSMemoryBIOProtocol} for TLS), as
    C{FileDescriptor.loseConnection} calls it at once when writing was shut.
    """
    transport = tcp_transport_of(channel.transport)
    if transport is None:
        # Not TCP (a transport in memory): as soon as it can.  An
        # H2Connection has no loseConnection of its own.
        lose = getattr(channel, "loseConnection", None)
        (lose or channel.transport.loseConnection)()
        return
    transport.stopReading()
    transport.stopWriting()
    transport.connectionLost(Failure(ConnectionDone("closed to free a descriptor")))
