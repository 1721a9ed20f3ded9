"""
Every reliance on Twisted behaviour that is not public API, in one place.

Each function says what it relies on; C{tests/test_twistedweb.py} pins each
of those behaviours, so that a Twisted upgrade that changes one fails there,
loudly, rather than as a wrong outcome somewhere else.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from typing import Any

from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.logger import ILogObserver, LogEvent, Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest

from ._outcome import Ending

__all__ = [
    "PeerTimedOut",
    "abort_connection",
    "accept_failure",
    "after_data_received",
    "channel_of",
    "classify",
    "close_at_once",
    "connection_closing",
    "http11_channel",
    "keep_alive_off",
    "on_connection",
    "on_connection_lost",
    "peer_timed_out",
    "receiving_request",
    "redirect_accept_log",
    "request_state",
    "reusable",
    "tcp_endpoint_address",
    "tcp_transport_of",
    "transport_of",
    "transport_paused",
    "watch_peer_timeout",
]


def request_state(request: IRequest) -> tuple[bool, bool]:
    """
    Whether C{request} has finished, and whether it has lost its connection.

    Relies on C{Request._disconnected}, set by C{Request.connectionLost}:
    twisted.web has no public flag for a lost connection, and
    C{request.finished} stays False then.  C{notifyFinish()} asked after
    either returns a Deferred that never fires (Twisted #4899), so this must
    be asked first.
    """
    finished = bool(getattr(request, "finished", False))
    gone = bool(getattr(request, "_disconnected", False))
    return finished, gone


def channel_of(request: IRequest) -> object:
    """
    The channel of C{request}: its C{HTTPChannel}, or for HTTP/2 its
    C{H2Stream}; L{None} once the connection is lost.

    C{Request.connectionLost} drops C{request.channel} before the
    C{notifyFinish()} errback runs: keep what this returns while the request
    is alive to learn later how its connection ended.
    """
    return getattr(request, "channel", None)


def transport_of(channel: object) -> object:
    """
    The transport of C{channel}'s connection.

    Relies on C{H2Stream._conn}: an HTTP/2 stream's own C{transport} is
    L{None}; its connection (C{H2Connection}) holds the socket's.
    """
    transport = getattr(channel, "transport", None)
    if transport is None:
        transport = getattr(getattr(channel, "_conn", None), "transport", None)
    return transport


def connection_closing(channel: object, ending: Ending) -> bool:
    """
    Whether the server had begun to close C{channel}'s connection (an idle
    timeout, an error) when it ended as C{ending}: then the client did not
    leave by itself.

    Over HTTP/1.1 a close the server began ends cleanly (C{ConnectionDone})
    with the transport's C{disconnecting} set.  Over HTTP/2 every stream
    hears "Producing stopped" (L{Ending.CLIENT_LOST}) however the connection
    went; only its transport (through C{H2Stream._conn}) says who began.
    """
    transport = getattr(channel, "transport", None)
    if transport is not None:
        return ending is Ending.CLIENT_CLOSED and bool(
            getattr(transport, "disconnecting", False)
        )
    connection = transport_of(channel)
    return ending is Ending.CLIENT_LOST and bool(
        getattr(connection, "disconnecting", False)
    )


def transport_paused(request: IRequest) -> bool:
    """
    Whether the transport of C{request}'s channel has asked it to stop
    writing.

    Relies on C{HTTPChannel._waitingForTransport}: a producer registered
    with the request while the transport is already paused is not told
    (the channel's C{pauseProducing} came before).
    """
    return bool(getattr(channel_of(request), "_waitingForTransport", False))


def keep_alive_off(request: IRequest) -> None:
    """
    Close the connection once C{request}'s answer is out.

    Relies on C{HTTPChannel.persistent}, read when the response ends; an
    HTTP/2 stream has no connection of its own and no such attribute.
    """
    channel = channel_of(request)
    if channel is not None and hasattr(channel, "persistent"):
        channel.persistent = False


def abort_connection(request: IRequest) -> bool:
    """
    Drop C{request}'s connection at once, without finishing the response;
    say whether it could be done (else the caller loses it cleanly).
    """
    abort = getattr(transport_of(channel_of(request)), "abortConnection", None)
    if not callable(abort):
        return False
    # ConnectionAborted: the ledger says the server aborted, not the client.
    abort()
    return True


class PeerTimedOut(ConnectionLost):
    """
    The kernel gave up on the peer: it stopped acknowledging what was sent
    (C{TCP_USER_TIMEOUT}) or answering keep-alive probes.  Put in place of
    the plain C{ConnectionLost} Twisted gives then (see
    L{watch_peer_timeout}); a C{ConnectionLost}, so code that expects one
    still sees one.
    """

    def __str__(self) -> str:
        return "the peer stopped responding"


def classify(reason: Failure) -> Ending:
    """
    Say how a connection ended from the failure Twisted gave for it.

    Relies on the messages of the plain C{ConnectionLost} that
    C{twisted.web._http2} hands a stream whatever happened: only the text
    tells a client's RST_STREAM ("Stream reset with code 8", "... code
    ErrorCodes.CANCEL" on Python 3.10; that stream alone), a GOAWAY, the
    rapid-reset defence, and the whole connection going ("Producing
    stopped", through C{H2Connection.stopProducing}, whatever the
    transport's reason: a FIN and a RST cannot be told apart there) apart.
    """
    # isinstance, not Failure.check: this runs once per interruption, and
    # check() builds qualified names for every class it is given.
    error = reason.value
    if isinstance(error, ConnectionDone):
        return Ending.CLIENT_CLOSED
    # Before ConnectionLost, which it subclasses (see watch_peer_timeout).
    if isinstance(error, PeerTimedOut):
        return Ending.PEER_TIMED_OUT
    # ConnectionAborted subclasses ConnectionLost: it must be tested first.
    if isinstance(error, ConnectionAborted):
        return Ending.SERVER_ABORTED
    if isinstance(error, ConnectionLost):
        args: tuple[object, ...] = getattr(error, "args", ())
        message = args[0] if args else None
        if isinstance(message, str):
            if message.startswith("Stream reset with code "):
                return Ending.STREAM_RESET
            if message == "Remote peer sent GOAWAY":
                return Ending.CLIENT_CLOSED
            if message == "Too many stream resets":
                # Rapid-reset defence: the server sent GOAWAY and hung up.
                return Ending.SERVER_ABORTED
            if message == "Producing stopped":
                return Ending.CLIENT_LOST
        return Ending.CLIENT_RESET
    return Ending.CLIENT_LOST


def tcp_endpoint_address(endpoint: object) -> tuple[str, int, int]:
    """
    The interface, port and backlog a C{TCP4ServerEndpoint} or
    C{TCP6ServerEndpoint} would listen with.

    Relies on their C{_interface}, C{_port} and C{_backlog} attributes: the
    endpoints have no public accessors, and the workers must bind that
    address themselves to share it.
    """
    return (
        str(getattr(endpoint, "_interface", "")),
        int(getattr(endpoint, "_port", 0)),
        int(getattr(endpoint, "_backlog", 50)),
    )


# -- Connections: the accepted socket, the HTTP/1.1 channel's state ---------


def on_connection(protocol: Any, made: Callable[[object], None]) -> None:
    """
    Call C{made(transport)} once C{protocol}, just built by a C{Site}, is
    connected, before it hears of it.

    Relies on the C{Site}'s callers (a port, C{TLSMemoryBIOProtocol}) calling
    the protocol's C{makeConnection} through the instance, which is wrapped
    here: twisted.web has no hook for a connection being made.
    """
    original = protocol.makeConnection

    def makeConnection(transport: object) -> None:
        made(transport)
        original(transport)

    protocol.makeConnection = makeConnection


def on_connection_lost(protocol: Any, lost: Callable[[], None]) -> None:
    """
    Call C{lost()} once C{protocol}'s connection is lost, after it heard.
    """
    original = protocol.connectionLost

    def connectionLost(reason: Failure) -> None:
        try:
            original(reason)
        finally:
            lost()

    protocol.connectionLost = connectionLost


def after_data_received(protocol: Any, then: Callable[[], None]) -> None:
    """
    Call C{then()} after each C{dataReceived} of C{protocol} (the one a
    C{Site} built, which hands the bytes to its HTTP/1.1 or HTTP/2 channel).
    """
    original = protocol.dataReceived

    def dataReceived(data: bytes) -> None:
        original(data)
        then()

    protocol.dataReceived = dataReceived


def http11_channel(protocol: object) -> Any:
    """
    The C{HTTPChannel} behind a protocol a C{Site} built, or L{None} once it
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
    descriptor without losing anything: idle between requests, or still
    sending its request's head (not its body: that is an upload under way).

    Relies on what L{receiving_request} relies on, on
    C{LineReceiver.line_mode} (the head is read in line mode, a body in raw
    mode), on C{HTTPChannel._waitingForTransport} and on the TCP transport's
    C{dataBuffer} and C{_tempDataBuffer} (an answer not yet sent).
    """
    if channel._handlingRequest or not channel.line_mode:
        return False
    # An answer still on its way out (a client that reads slowly) is kept.
    if channel._waitingForTransport:
        return False
    transport = tcp_transport_of(channel.transport)
    return not (
        getattr(transport, "dataBuffer", b"")
        or getattr(transport, "_tempDataBuffer", None)
    )


def tcp_transport_of(transport: object) -> Any:
    """
    The TCP transport under C{transport}: itself, or for TLS the one under
    C{TLSMemoryBIOProtocol} (whose C{getHandle()} is the TLS connection);
    L{None} for anything else (a UNIX socket, a transport in memory).
    Its C{getHandle()} is the socket.
    """
    for _ in range(4):
        handle = getattr(transport, "getHandle", lambda: None)()
        if isinstance(handle, socket.socket):
            if handle.family in (socket.AF_INET, socket.AF_INET6):
                return transport
            return None
        transport = getattr(transport, "transport", None)
        if transport is None:
            return None
    return None


def close_at_once(channel: Any) -> None:
    """
    Close C{channel}'s connection now, its descriptor free before this
    returns (C{loseConnection} and C{abortConnection} close it on a later
    turn of the reactor, too late for an accept in the same turn).  Only for
    a connection with nothing left to write.

    Relies on C{tcp.Connection.connectionLost} closing the socket and
    telling the protocol (through C{TLSMemoryBIOProtocol} for TLS), as
    C{FileDescriptor.loseConnection} calls it at once when writing was shut.
    """
    transport = tcp_transport_of(channel.transport)
    if transport is None:
        channel.loseConnection()
        return
    transport.stopReading()
    transport.stopWriting()
    transport.connectionLost(Failure(ConnectionDone("closed to free a descriptor")))


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
    original = transport.connectionLost

    def connectionLost(reason: Failure) -> None:
        if type(reason.value) is ConnectionLost and _unanswered(sock):
            setattr(transport, _PEER_GAVE_UP, True)
            reason = Failure(PeerTimedOut())
        original(reason)

    transport.connectionLost = connectionLost


def _unanswered(sock: socket.socket) -> bool:
    try:
        # struct tcp_info begins with u8 state, ca_state, retransmits, probes.
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    except OSError:
        return False
    _state, _ca_state, retransmits, probes = struct.unpack_from("4B", info)
    return bool(retransmits or probes)


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


# -- Listening ports: failed accepts -----------------------------------------

_ACCEPT_FORMATS = {
    "EMFILE encountered; releasing reserved file descriptor.": "",
    "EMFILE recovery: Closed socket from {address}": "EMFILE",
    "Re-reserving EMFILE recovery file descriptor.": "",
    "Could not accept new connection ({acceptError})": "?",
}


def accept_failure(event: LogEvent) -> str | None:
    """
    For a log event of a listening port: L{None} if it is not about a failed
    accept; C{""} if it is but turned no client away by itself; else the
    error of the client turned away (C{"EMFILE"}, C{"ENFILE"}...).

    Relies on the formats C{twisted.internet.tcp._accept} logs with: on
    C{EMFILE} it frees a reserved descriptor, accepts and at once closes
    each waiting client (one line each, plus two); on C{ENFILE}, C{ENOBUFS},
    C{ENOMEM} (or C{EMFILE} with no reserve) it logs one line and leaves the
    client waiting.
    """
    kind = _ACCEPT_FORMATS.get(event.get("log_format", ""))
    if kind == "?":
        return str(event.get("acceptError", "accept error"))
    return kind


def redirect_accept_log(port: Any, observer: ILogObserver) -> bool:
    """
    Send what C{port} (a C{tcp.Port}) logs about accepting to C{observer};
    say whether it could be done.

    Relies on C{tcp.Port._logger}, whose namespace and observer its
    C{doRead} logs accept errors through (a line per failed accept).
    """
    logger = getattr(port, "_logger", None)
    if not isinstance(logger, Logger):
        return False
    port._logger = Logger(namespace=logger.namespace, observer=observer)
    return True
