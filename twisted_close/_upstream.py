"""
Read another service's answer so that giving up on it closes the connection.
"""

from __future__ import annotations

from typing import cast

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.iweb import IResponse

__all__ = ["read_body"]


def read_body(response: IResponse) -> Deferred[bytes]:
    """
    The whole body of C{response} (from C{Agent}, or treq's response): as
    C{treq.content()} or C{readBody()}, except that cancelling the
    C{Deferred} closes the connection, so the server that is answering sees
    its client go (C{Connection interrupted}, if it is one of ours).

    C{treq.content()} has no canceller: cancelled, it leaves the connection
    open and the body coming.  C{readBody()} aborts only a transport with
    C{abortConnection()}, which the HTTP/1.1 client's is not.
    """
    reader = _Reader()

    def cancel(ignored: Deferred[bytes]) -> None:
        transport = reader.transport
        if transport is None:
            return
        abort = getattr(transport, "abortConnection", None)
        if callable(abort):
            abort()
        else:
            # The HTTP client's TransportProxyProducer: stopping it loses
            # the connection (not kept for reuse: it is closed).
            cast(IPushProducer, transport).stopProducing()

    reader.done = Deferred(cancel)
    response.deliverBody(reader)
    return reader.done


class _Reader(Protocol):
    done: Deferred[bytes]

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        # Loaded here: whoever has a response has loaded the HTTP client.
        from twisted.web.client import ResponseDone
        from twisted.web.http import PotentialDataLoss

        if self.done.called:  # cancelled
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self.chunks))
        else:
            self.done.errback(reason)
