"""
Every reliance on Twisted behaviour that is not public API, in one place.

Each function says what it relies on; C{tests/test_twistedweb.py} pins each
of those behaviours, so that a Twisted upgrade that changes one fails there,
loudly, rather than as a wrong outcome somewhere else.
"""

from __future__ import annotations

import sys
from asyncio import AbstractEventLoop

from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IReactorCore
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest

from ._outcome import Ending

__all__ = [
    "abort_connection",
    "abort_request",
    "asyncio_event_loop",
    "channel_of",
    "classify",
    "connection_closing",
    "keep_alive_off",
    "reactor_cutting_connections",
    "request_state",
    "tcp_endpoint_address",
    "transport_of",
    "transport_paused",
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
