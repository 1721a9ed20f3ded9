"""
What the failures Twisted gives for a lost connection say (L{loss_of}), and the
one failure of ours put in place of a plain C{ConnectionLost} (L{PeerTimedOut}).

Each function says what Twisted behaviour it relies on;
C{tests/test_twisted_failures.py} pins each of them.
"""

from __future__ import annotations

from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.python.failure import Failure

from .._endings import Loss

__all__ = [
    "PeerTimedOut",
    "loss_of",
]


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
