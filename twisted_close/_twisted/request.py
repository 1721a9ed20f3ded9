"""
The request and its channel as twisted.web keeps them: whether it finished or lost
its connection, the channel and transport behind it, who began to close it, and
how to drop it.

Each function says what Twisted behaviour it relies on; C{tests/test_twisted_request.py}
pins each of them.
"""

from __future__ import annotations

from collections.abc import Callable
from io import BytesIO
from typing import Any

from twisted.internet.interfaces import IAddress
from twisted.web.iweb import INonQueuedRequestFactory, IRequest
from zope.interface import directlyProvides, implementer

__all__ = [
    "SPOOLED_FROM",
    "abort_connection",
    "abort_request",
    "body_bounded",
    "body_length",
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


SPOOLED_FROM = 100_000
"""Twisted's C{http._getContentFile} keeps a body of this many bytes or
more (or of unknown length) in a temporary file instead of memory."""


def body_bounded(
    factory: Any, max_body: int, refuse: Callable[[Any, int | None], None]
) -> Any:
    """
    A subclass of the request class C{factory} whose body may not pass
    C{max_body} bytes.  A body announced longer (C{Content-Length}) is
    refused before its first byte is read, a body of unknown length
    (chunked, or HTTP/2 without C{Content-Length}) once it passes the
    bound: C{refuse(request, length)} is called once, with the announced
    length or C{None}; the request reads nothing more and is never
    rendered.  Under L{SPOOLED_FROM} bytes, no body goes to a temporary
    file.

    Relies on twisted.web calling C{Request.gotLength} (which makes
    C{Request.content}) once the head is in and before any of the body,
    with the C{Content-Length} or C{None} (HTTP/1.1's
    C{HTTPChannel.allHeadersReceived}, HTTP/2's C{H2Stream._convertHeaders}),
    on every byte of the body going through C{Request.handleContentChunk},
    and on C{Request.requestReceived} starting the rendering once the
    whole body is in.
    """

    def _refuse(request: Any, length: int | None) -> None:
        request._body_refused = True
        # Never rendered; an attribute of this one request, so that the
        # others pay nothing for it.
        request.requestReceived = _not_received
        refuse(request, length)

    # A declaration of its own, though it adds nothing: HTTPChannel asks
    # INonQueuedRequestFactory.providedBy() of the class for every request,
    # and zope.interface answers a subclass without one the slow way (about
    # 400 ns, or 0.7% of a request).
    @implementer()
    class Bounded(factory):  # type: ignore[misc]
        # Class defaults: a request without a body costs nothing more.
        _body_read = 0
        _body_refused = False

        def gotLength(self, length: int | None) -> None:
            if length is not None and length > max_body:
                self.content = BytesIO()
                _refuse(self, length)
            elif max_body < SPOOLED_FROM:
                # Bounded below the spooling size: memory, never a file.
                self.content = BytesIO()
            else:
                super().gotLength(length)

        def handleContentChunk(self, data: bytes) -> None:
            if self._body_refused:
                return
            read = self._body_read + len(data)
            if read > max_body:
                _refuse(self, None)
                return
            self._body_read = read
            self.content.write(data)

    Bounded.__name__ = Bounded.__qualname__ = "Bounded" + factory.__name__
    if INonQueuedRequestFactory.providedBy(factory):
        # What a class provides is not inherited: HTTPChannel asks.
        directlyProvides(Bounded, INonQueuedRequestFactory)
    return Bounded


def _not_received(command: bytes, path: bytes, version: bytes) -> None:
    pass


def body_refused(request: object) -> bool:
    """
    Whether C{request}, of a L{body_bounded} class, had its body refused.
    """
    return bool(getattr(request, "_body_refused", False))


def reject_body_h1(request: Any, answer: bytes) -> bool:
    """
    Write C{answer} (a whole raw HTTP/1.1 response) on the connection of
    C{request} and close it once written, if it is an HTTP/1.1 one; say
    whether it was.

    Relies on C{Request.channel} being the C{HTTPChannel} while the body
    is read (an HTTP/2 stream has no C{loseConnection}), and on
    C{HTTPChannel.loseConnection} writing what is queued before it closes
    and reading nothing more.  The request was not received yet: its
    own C{write} would know neither its version nor its method.
    """
    channel = getattr(request, "channel", None)
    if channel is None or hasattr(channel, "streamID"):
        return False
    transport = channel.transport
    if transport is None:
        return True
    transport.write(answer)
    channel.persistent = False
    channel.loseConnection()
    return True


def body_length(request: object) -> int:
    """
    How many bytes of body C{request} came with.

    Relies on C{Request.content}, the file twisted.web read the body into
    (C{BytesIO} or a temporary file), rewound before rendering.
    """
    read = getattr(request, "_body_read", None)
    if read is not None:
        return int(read)  # counted as it came (body_bounded)
    content: Any = getattr(request, "content", None)
    if content is None:
        return 0
    try:
        here = content.tell()
        end = int(content.seek(0, 2))
        content.seek(here)
    except (OSError, ValueError, AttributeError):
        return 0
    return end
