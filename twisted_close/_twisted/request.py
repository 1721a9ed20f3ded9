"""
The request and its channel as twisted.web keeps them: whether it finished or lost
its connection, the channel and transport behind it, who began to close it, and
how to drop it.

Each function says what Twisted behaviour it relies on; C{tests/test_twisted_request.py}
pins each of them.
"""

from __future__ import annotations

from twisted.internet.interfaces import IAddress
from twisted.web.iweb import IRequest

__all__ = [
    "abort_connection",
    "abort_request",
    "channel_of",
    "keep_alive_off",
    "request_state",
    "server_closing",
    "set_client_address",
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


def set_client_address(request: IRequest, address: IAddress) -> None:
    """
    Make C{address} what C{request.getClientAddress()} (and so twisted.web's
    access log) says from now on.

    Relies on C{Request.client}: set from the channel's peer when the
    request is made, and what C{getClientAddress()} returns.
    """
    request.client = address  # type: ignore[attr-defined]


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
