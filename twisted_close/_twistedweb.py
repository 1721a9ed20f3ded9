"""
Every reliance on Twisted behaviour that is not public API, in one place.

Each function says what it relies on; C{tests/test_twistedweb.py} pins each
of those behaviours, so that a Twisted upgrade that changes one fails there,
loudly, rather than as a wrong outcome somewhere else.
"""

from __future__ import annotations

import socket
import struct
import sys
from asyncio import AbstractEventLoop
from collections.abc import Callable
from typing import Any, ClassVar
from typing import Protocol as TypingProtocol

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.internet.interfaces import (
    IDelayedCall,
    IHalfCloseableProtocol,
    IReactorCore,
    ITCPTransport,
)
from twisted.logger import ILogObserver, LogEvent, Logger
from twisted.python.failure import Failure
from twisted.web.http import (
    HTTPChannel,
    _GenericHTTPChannelProtocol,
    _genericHTTPChannelProtocolFactory,
)
from twisted.web.iweb import IRequest
from zope.interface import alsoProvides

try:
    from twisted.protocols.tls import TLSMemoryBIOProtocol
except ImportError:  # pragma: no cover - without twisted[tls] there is no TLS
    TLSMemoryBIOProtocol = None  # type: ignore[assignment,misc]

from ._endings import Loss

__all__ = [
    "NETWORK_PRODUCER",
    "TCP_CLOSE",
    "TCP_CLOSE_WAIT",
    "PeerTimedOut",
    "abort_connection",
    "abort_request",
    "abort_stream",
    "abort_transport",
    "accept_failure",
    "asyncio_event_loop",
    "channel_of",
    "close_at_once",
    "guard_protocols",
    "http11_channel",
    "is_tls",
    "keep_alive_off",
    "keep_tls_tcp_reason",
    "lose_connection",
    "loss_of",
    "network_producer",
    "on_half_close",
    "peer_timed_out",
    "reactor_cutting_connections",
    "receiving_request",
    "record_stream_loss",
    "redirect_accept_log",
    "replace_network_producer",
    "request_in_hand",
    "request_state",
    "reusable",
    "server_closing",
    "stop_after_answer",
    "stream_blocked",
    "stream_end_pending",
    "tcp_endpoint_address",
    "tcp_socket",
    "tcp_state",
    "tcp_transport_of",
    "tls_tcp_reason",
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
    C{H2Stream}; C{None} once the connection is lost.

    C{Request.connectionLost} drops C{request.channel} before the
    C{notifyFinish()} errback runs: keep what this returns while the request
    is alive to learn later how its connection ended.
    """
    return getattr(request, "channel", None)


def transport_of(channel: object) -> object:
    """
    The transport of C{channel}'s connection.

    Relies on C{H2Stream._conn}: an HTTP/2 stream's own C{transport} is
    C{None}; its connection (C{H2Connection}) holds the socket's.
    """
    transport = getattr(channel, "transport", None)
    if transport is None:
        transport = getattr(getattr(channel, "_conn", None), "transport", None)
    return transport


def server_closing(channel: object) -> tuple[bool, bool]:
    """
    Whether C{channel} is an HTTP/2 stream (no transport of its own), and
    whether the server had begun to close its connection (an idle timeout,
    an error): then a client seeming to leave did not leave by itself.

    Relies on C{H2Stream._conn} (see L{transport_of}) and on a transport's
    C{disconnecting}, set once C{loseConnection} was called.
    """
    transport = getattr(channel, "transport", None)
    if transport is not None:
        return False, bool(getattr(transport, "disconnecting", False))
    connection = transport_of(channel)
    return True, bool(getattr(connection, "disconnecting", False))


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


def abort_request(request: IRequest) -> bool:
    """
    Drop C{request} at once, without finishing the response: its HTTP/2
    stream alone (RST_STREAM), or its HTTP/1 connection.  Say whether it
    could be done.

    Relies on twisted.web's C{H2Stream} (the channel of an HTTP/2 request)
    having C{abortConnection} and C{streamID}, which C{HTTPChannel} lacks.
    """
    channel = channel_of(request)
    abort = getattr(channel, "abortConnection", None)
    if hasattr(channel, "streamID") and callable(abort):
        abort()
        return True
    return abort_connection(request)


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


def loss_of(reason: Failure | None) -> Loss | None:
    """
    What the failure Twisted gave for a lost connection says (L{Loss}).

    Relies on the messages of the plain C{ConnectionLost} that
    C{twisted.web._http2} hands a stream whatever happened: only the text
    tells a client's RST_STREAM ("Stream reset with code 8", "... code
    ErrorCodes.CANCEL" on Python 3.10; that stream alone), a GOAWAY, the
    rapid-reset defence, and the whole connection going ("Producing
    stopped", through C{H2Connection.stopProducing}, whatever the
    transport's reason: a FIN and a RST cannot be told apart there) apart.
    And on C{twisted.internet.tcp} ending a connection with
    C{ConnectionDone} for a FIN and a plain C{ConnectionLost} for a failed
    read (a reset).
    """
    if reason is None:
        return None
    error = reason.value
    if isinstance(error, ConnectionDone):
        return Loss.DONE
    # Before ConnectionLost, which both subclass.
    if isinstance(error, PeerTimedOut):
        return Loss.PEER_TIMEOUT
    if isinstance(error, ConnectionAborted):
        return Loss.ABORTED
    if isinstance(error, ConnectionLost):
        args: tuple[object, ...] = getattr(error, "args", ())
        message = args[0] if args else None
        if isinstance(message, str):
            if message.startswith("Stream reset with code "):
                return Loss.STREAM_RESET
            if message == "Remote peer sent GOAWAY":
                return Loss.GOAWAY
            if message == "Too many stream resets":
                return Loss.RAPID_RESET
            if message == "Producing stopped":
                return Loss.STOPPED
        return Loss.RESET
    return Loss.OTHER


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


def asyncio_event_loop(reactor: object) -> AbstractEventLoop | None:
    """
    The asyncio event loop C{reactor} runs on, if it is an
    C{AsyncioSelectorReactor}; else C{None}.

    Relies on C{AsyncioSelectorReactor._asyncioEventloop}: the reactor has
    no public accessor for its loop.  Never imports the asyncio reactor
    module: if nobody has, C{reactor} cannot be one.
    """
    module = sys.modules.get("twisted.internet.asyncioreactor")
    if module is None or not isinstance(reactor, module.AsyncioSelectorReactor):
        return None
    loop: AbstractEventLoop = reactor._asyncioEventloop
    return loop


def reactor_cutting_connections(reactor: IReactorCore) -> bool:
    """
    Whether C{reactor}, whose shutdown has begun, is now dropping every
    connection.

    Relies on the order of C{ReactorBase}'s own C{'during' 'shutdown'}
    triggers: C{crash()}, which sets the public C{running} to False, comes
    before C{disconnectAll()}, which loses every connection (as a plain
    C{ConnectionLost}, the same failure as a client's reset).
    """
    return not reactor.running


# -- One HTTP/1.x connection: its TLS layer, its reading, its half-close ------


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


# <netinet/tcp.h>: the first byte of struct tcp_info is the state.
TCP_CLOSE = 7
TCP_CLOSE_WAIT = 8
_TCP_INFO = getattr(socket, "TCP_INFO", None)


def tcp_state(sock: socket.socket) -> int | None:
    """
    The kernel's TCP state of C{sock} (Linux C{TCP_INFO}): C{TCP_CLOSE_WAIT}
    once the peer's FIN came, C{TCP_CLOSE} once its RST did; C{None} where
    it cannot be asked.
    """
    if _TCP_INFO is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 1)
    except OSError:
        return None
    return info[0] if info else None


_TCP_REASON = "_twisted_close_tcp_reason"


def keep_tls_tcp_reason(transport: object) -> None:
    """
    If C{transport} is Twisted's TLS layer, keep the reason the TCP
    connection under it ended, for L{tls_tcp_reason}, before the layer
    above hears of it.

    Relies on C{TLSMemoryBIOProtocol.connectionLost} being what the TCP
    transport calls: it turns an EOF without C{close_notify} (a FIN) and a
    reset alike into a bare C{ConnectionLost}, so the reason TCP gave is
    only to be had there.
    """
    if not is_tls(transport):
        return
    untyped: Any = transport
    # An instance attribute: this one connection, no subclass to install.
    untyped.connectionLost = _KeepTCPReason(transport)


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
        if self._below is not None:
            self._below(reason)
        else:
            type(self._transport).connectionLost(self._transport, reason)


class _KeepTCPReason(_ConnectionLost):
    """
    See L{keep_tls_tcp_reason}.
    """

    __slots__ = ()

    def __call__(self, reason: Failure) -> None:
        setattr(self._transport, _TCP_REASON, reason)
        self._call_below(reason)


def tls_tcp_reason(transport: object) -> Failure | None:
    """
    What L{keep_tls_tcp_reason} kept, if anything.
    """
    reason: Failure | None = getattr(transport, _TCP_REASON, None)
    return reason


def is_tls(transport: object) -> bool:
    """
    Whether C{transport} is Twisted's TLS layer.
    """
    return TLSMemoryBIOProtocol is not None and isinstance(
        transport, TLSMemoryBIOProtocol
    )


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


# -- An HTTP/2 stream's end ---------------------------------------------------


def stream_end_pending(channel: object) -> Deferred[object] | None:
    """
    For an HTTP/2 stream whose request has finished but whose end
    (C{END_STREAM}) has not yet gone out: a Deferred that fires once the
    stream is done with, sent or not.  C{None} once it is done with, or for
    anything else.  Ask only once the request has finished: before, a
    stream is not done with either, and this says so.

    Relies on C{H2Stream._conn}, C{H2Stream.streamID} and
    C{H2Connection._streamCleanupCallbacks}: the Deferred
    C{H2Connection._requestDone} fires when the stream's end was written,
    or when it was reset or its connection lost (then after the stream's
    C{connectionLost}).  C{request.finish()} only queues the end behind the
    data that flow control holds back.
    """
    connection = getattr(channel, "_conn", None)
    if connection is None:
        return None
    cleanups = getattr(connection, "_streamCleanupCallbacks", None)
    d = None if cleanups is None else cleanups.get(getattr(channel, "streamID", None))
    if d is None or d.called:
        return None
    done: Deferred[object] = Deferred()

    def tell(result: object) -> object:
        done.callback(None)
        return result

    d.addBoth(tell)
    return done


def stream_blocked(channel: object) -> bool:
    """
    Whether an HTTP/2 stream has data queued that its flow-control window
    does not let out, or its connection waits on a full transport.

    Relies on C{H2Connection.remainingOutboundWindow} (window less what is
    queued) and C{H2Connection._consumerBlocked}.
    """
    connection = getattr(channel, "_conn", None)
    if connection is None:
        return False
    if getattr(connection, "_consumerBlocked", None) is not None:
        return True
    try:
        return bool(connection.remainingOutboundWindow(channel.streamID) < 0)  # type: ignore[attr-defined]
    except Exception:
        return False


def abort_stream(channel: object) -> None:
    """
    Reset an HTTP/2 stream (RST_STREAM), its connection going on.

    Relies on C{H2Stream.abortConnection} resetting that stream alone.
    """
    abort = getattr(channel, "abortConnection", None)
    if callable(abort):
        abort()


def record_stream_loss(channel: object, record: Callable[[Failure], None]) -> None:
    """
    Call C{record} with the reason an HTTP/2 stream is told it was lost (a
    reset, its connection going) after its request finished, when the
    request itself is no longer told.

    Relies on C{H2Connection} calling C{H2Stream.connectionLost} before
    C{_requestDone} for a reset stream or a lost connection, and not when
    the stream's end was sent.
    """
    untyped: Any = channel
    below = untyped.connectionLost

    def connection_lost(reason: Failure) -> None:
        record(reason)
        below(reason)

    untyped.connectionLost = connection_lost


# -- Connections: the accepted socket, the HTTP/1.1 channel's state ---------


class ConnectionHooks(TypingProtocol):
    """
    What L{guard_protocols} tells of each connection a C{Site} accepts.
    """

    read_timeout: float | None
    """C{None}: L{reading} is not told of the connections made meanwhile."""

    def made(self, protocol: Any, transport: object) -> None:
        """
        C{protocol} is connected to C{transport}, and not yet told.
        """

    def heard(self, protocol: Any) -> None:
        """
        C{protocol} has heard that its connection was made.
        """

    def lost(self, protocol: Any) -> None:
        """
        C{protocol} has heard that its connection was lost.
        """

    def reading(self, protocol: Any, receiving: bool) -> None:
        """
        After a read, C{protocol}'s HTTP/1.1 channel has part of a request
        (C{receiving}) and no C{guard_read_timer}, or has none and a timer.
        """


class GuardedProtocol:
    """
    What L{guard_protocols} adds to the class of the protocols a C{Site}
    builds: its C{guard_hooks} hear of each connection, and the hooks' state of
    the connection is kept on its protocol (no object more per connection,
    no closure per instance).
    """

    # Named for the guard: no name Twisted's protocols use.
    guard_hooks: ClassVar[ConnectionHooks]
    guard_read_timer: IDelayedCall | None = None
    """The hooks' timer of the request being received, if any."""
    guard_closing = False
    """Whether the hooks are closing the connection."""
    guard_refused = False
    """Whether the hooks refused the connection as it was made."""

    def makeConnection(self, transport: object) -> None:
        hooks = self.guard_hooks
        hooks.made(self, transport)
        super().makeConnection(transport)  # type: ignore[misc]
        hooks.heard(self)

    def connectionLost(self, reason: Failure) -> None:
        try:
            super().connectionLost(reason)  # type: ignore[misc]
        finally:
            self.guard_hooks.lost(self)


class _ReadTimed(GuardedProtocol):
    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)  # type: ignore[misc]
        channel = http11_channel(self)
        receiving = channel is not None and receiving_request(channel)
        if receiving is (self.guard_read_timer is None):
            self.guard_hooks.reading(self, receiving)


def guard_protocols(site: Any, hooks: ConnectionHooks) -> None:
    """
    Have C{site} build each protocol as an instance of a subclass of what it
    builds now (L{GuardedProtocol}, the class made once), which tells
    C{hooks} of its connection (see L{ConnectionHooks}): over HTTP/1.1, and
    HTTP/2 over TLS.

    Relies on C{Factory.buildProtocol} calling the factory's C{protocol()},
    on the C{Site}'s callers (a port, C{TLSMemoryBIOProtocol}) calling the
    protocol's C{makeConnection}, C{dataReceived} and C{connectionLost},
    and on what L{http11_channel} and L{receiving_request} rely on.  For
    twisted.web's own protocol factory, on its being
    C{_GenericHTTPChannelProtocol(HTTPChannel())}, built here as the
    subclass; any other protocol has its class changed once built, which
    costs CPython an instance dictionary.
    """
    make = site.protocol
    classes: dict[tuple[type, bool], type] = {}

    def guarded(base: type) -> Any:
        timed = hooks.read_timeout is not None
        cls = classes.get((base, timed))
        if cls is None:
            mixin = _ReadTimed if timed else GuardedProtocol
            namespace = {"guard_hooks": hooks, "__module__": __name__}
            cls = classes[base, timed] = type(base.__name__, (mixin, base), namespace)
        return cls

    if getattr(make, "__func__", None) is _genericHTTPChannelProtocolFactory:

        def protocol() -> Any:
            return guarded(_GenericHTTPChannelProtocol)(HTTPChannel())

    else:

        def protocol() -> Any:
            built = make()
            built.__class__ = guarded(type(built))
            return built

    site.protocol = protocol


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
    C{None} for anything else (a UNIX socket, a transport in memory).
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
            if sock is not None and _unanswered(sock):
                setattr(transport, _PEER_GAVE_UP, True)
                reason = Failure(PeerTimedOut())
        self._call_below(reason)


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
    For a log event of a listening port: C{None} if it is not about a failed
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
