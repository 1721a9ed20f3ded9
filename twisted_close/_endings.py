"""
How a request ended, decided in one place.

Everything that decides an L{Ending} lives in this module, as two ordered
tables: L{RULES}, from the L{Evidence} a request's watch gathered when its
answer finished or its connection was lost, and L{PEER_RULES}, from what a
connection's own watch saw of its client between requests.  The first row
whose test holds decides.  The code around these tables only gathers
evidence (the facts of Twisted's objects are read in
L{twisted_close._twisted}); no other module turns a failure into an
L{Ending}.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from dataclasses import dataclass

from ._outcome import Ending

__all__ = [
    "PEER_RULES",
    "RULES",
    "Evidence",
    "Loss",
    "PeerSign",
    "Rule",
    "decide",
    "decide_loss",
    "peer_ending",
]


class Loss(enum.Enum):
    """
    What the failure Twisted gave for a lost connection says, as a fact:
    the kind of its exception, and for twisted.web's HTTP/2 streams, the
    words of its message (see L{twisted_close._twisted.failures.loss_of}).
    """

    # By identity, in C: Enum hashes the name in Python, a call per lookup of
    # the counters keyed by these (several per interruption).
    __hash__ = object.__hash__

    DONE = "ConnectionDone: a clean close (a FIN)"
    PEER_TIMEOUT = "the kernel gave up on an unanswering peer"
    ABORTED = "ConnectionAborted: the server aborted the connection"
    STREAM_RESET = "HTTP/2: the client reset the stream"
    GOAWAY = "HTTP/2: the client sent GOAWAY"
    RAPID_RESET = "HTTP/2: the rapid-reset defence hung up"
    STOPPED = "HTTP/2: the connection went (a FIN and a RST alike)"
    RESET = "a plain ConnectionLost: a reset"
    OTHER = "any other failure"


@dataclass(frozen=True, slots=True)
class Evidence:
    """
    What is known about one request when it ends.

    @ivar finished: whether its answer was finished (C{notifyFinish()}
        fired its callback, or an HTTP/2 stream's end went out).
    @ivar loss: how its connection was lost, if it was.
    @ivar server: the ending the server chose first (a graceful shutdown,
        a stalled stream, a worker's death), if it did.
    @ivar peer: what the connection's watch found of the client (gone by
        TCP state, half-closed, stopped reading), if anything.
    @ivar already_gone: whether the connection was lost before the request
        was watched at all.
    @ivar stream: whether the request is an HTTP/2 stream (no transport of
        its own).
    @ivar closing: whether the server had begun to close the connection
        (its transport's C{disconnecting}: an idle timeout, an error).
    @ivar peer_timed_out: whether the kernel gave up on the peer under an
        HTTP/2 connection (its streams hear only L{Loss.STOPPED}).
    @ivar shutdown: whether the reactor was dropping every connection as
        it stopped.
    @ivar tls: whether the connection is Twisted's TLS layer.
    @ivar tcp: under TLS, how the TCP connection below it was lost, if
        known (TLS says only L{Loss.RESET} for a FIN without
        C{close_notify} and a reset alike).
    @ivar unacknowledged: bytes of a finished answer that the client's TCP
        had not acknowledged when its connection ended.
    """

    finished: bool = False
    loss: Loss | None = None
    server: Ending | None = None
    peer: Ending | None = None
    already_gone: bool = False
    stream: bool = False
    closing: bool = False
    peer_timed_out: bool = False
    shutdown: bool = False
    tls: bool = False
    tcp: Loss | None = None
    unacknowledged: int = 0


@dataclass(frozen=True)
class Rule:
    """
    One row of a table: when C{holds}, the ending is C{ending}, or for a
    row that passes on an ending chosen earlier, C{passes} of the evidence.

    @ivar why: the row in words, for the tests and the docs.
    """

    why: str
    holds: Callable[[Evidence], bool]
    ending: Ending | None = None
    passes: Callable[[Evidence], Ending | None] | None = None

    def result(self, evidence: Evidence) -> Ending:
        """
        The ending this row gives for C{evidence} (which it holds for).
        """
        if self.ending is not None:
            return self.ending
        assert self.passes is not None
        ending = self.passes(evidence)
        assert ending is not None
        return ending


def _lost(*kinds: Loss) -> Callable[[Evidence], bool]:
    return lambda e: e.loss in kinds


def _server(e: Evidence) -> Ending | None:
    return e.server


def _peer(e: Evidence) -> Ending | None:
    return e.peer


_HALF_CLOSED = Ending.CLIENT_HALF_CLOSED

RULES: tuple[Rule, ...] = (
    Rule("lost before it was watched", lambda e: e.already_gone, Ending.ALREADY_GONE),
    Rule("the server ended it first", lambda e: e.server is not None, passes=_server),
    Rule(
        "answered, and its client was found gone or half-closed meanwhile",
        lambda e: e.finished and e.peer is not None,
        passes=_peer,
    ),
    Rule(
        "handed over, and the reactor dropped it as it stopped",
        lambda e: e.finished and e.unacknowledged > 0 and e.shutdown,
        Ending.SHUTDOWN,
    ),
    Rule(
        "handed over, but the connection ended before the client's TCP "
        "acknowledged all of it",
        lambda e: e.finished and e.unacknowledged > 0,
        Ending.ANSWER_NOT_ACKNOWLEDGED,
    ),
    Rule("answered in full", lambda e: e.finished and e.loss is None, Ending.COMPLETED),
    Rule(
        "a clean close the server had begun (HTTP/1.x)",
        lambda e: e.loss is Loss.DONE and not e.stream and e.closing,
        Ending.SERVER_CLOSED,
    ),
    Rule(
        "an HTTP/2 connection the server had begun to close",
        lambda e: e.loss is Loss.STOPPED and e.stream and e.closing,
        Ending.SERVER_CLOSED,
    ),
    Rule(
        "found gone by the connection's watch, which then aborted it",
        lambda e: e.peer is not None and e.peer is not _HALF_CLOSED,
        passes=_peer,
    ),
    Rule(
        "an HTTP/2 connection whose peer stopped responding",
        lambda e: e.loss is Loss.STOPPED and e.peer_timed_out,
        Ending.PEER_TIMED_OUT,
    ),
    Rule(
        "dropped by the reactor as it stopped (no graceful drain)",
        lambda e: e.shutdown and e.loss not in (Loss.ABORTED, Loss.RAPID_RESET),
        Ending.SHUTDOWN,
    ),
    Rule("a clean close", _lost(Loss.DONE), Ending.CLIENT_CLOSED),
    Rule(
        "the kernel gave up on the peer",
        _lost(Loss.PEER_TIMEOUT),
        Ending.PEER_TIMED_OUT,
    ),
    Rule("aborted by the server", _lost(Loss.ABORTED), Ending.SERVER_ABORTED),
    Rule("the client reset its stream", _lost(Loss.STREAM_RESET), Ending.STREAM_RESET),
    Rule("the client sent GOAWAY", _lost(Loss.GOAWAY), Ending.CLIENT_CLOSED),
    Rule("the rapid-reset defence", _lost(Loss.RAPID_RESET), Ending.SERVER_ABORTED),
    Rule("an HTTP/2 connection went", _lost(Loss.STOPPED), Ending.CLIENT_LOST),
    Rule(
        "TLS lost, TCP closed cleanly: no close_notify",
        lambda e: e.loss is Loss.RESET and e.tls and e.tcp is Loss.DONE,
        Ending.CLIENT_CLOSED_NO_TLS_CLOSE,
    ),
    Rule(
        "TLS lost, the kernel gave up on the peer",
        lambda e: e.loss is Loss.RESET and e.tls and e.tcp is Loss.PEER_TIMEOUT,
        Ending.PEER_TIMED_OUT,
    ),
    Rule(
        "TLS lost, TCP reset",
        lambda e: e.loss is Loss.RESET and e.tls and e.tcp is Loss.RESET,
        Ending.CLIENT_RESET,
    ),
    Rule(
        "TLS lost, TCP's reason unknown",
        lambda e: e.loss is Loss.RESET and e.tls,
        Ending.CLIENT_LOST,
    ),
    Rule("a reset", _lost(Loss.RESET), Ending.CLIENT_RESET),
    Rule("anything else", lambda e: True, Ending.CLIENT_LOST),
)
"""From a request's L{Evidence} to its L{Ending}: the first row that holds."""


@functools.lru_cache(maxsize=1024)
def decide(evidence: Evidence) -> Ending:
    """
    How the request whose evidence this is ended: the first of L{RULES}
    that holds.

    Remembered by evidence (a frozen value, and few distinct ones are ever
    seen): a storm of resets walks the rows once, not once per request.
    """
    for rule in RULES:
        if rule.holds(evidence):
            return rule.result(evidence)
    raise AssertionError("the last rule always holds")  # pragma: no cover


_LOSSES: dict[tuple[object, ...], Ending] = {}


def decide_loss(
    finished: bool,
    loss: Loss | None,
    server: Ending | None,
    peer: Ending | None,
    stream: bool,
    closing: bool,
    peer_timed_out: bool,
    shutdown: bool,
    tls: bool,
    tcp: Loss | None,
) -> Ending:
    """
    L{decide} for a lost connection, given the L{Evidence} fields it sets.

    Remembered by those facts in a plain dictionary: a storm of resets
    neither builds an L{Evidence} nor hashes one per request.
    """
    facts = (finished, loss, server, peer, stream, closing, peer_timed_out, shutdown)
    key = (*facts, tls, tcp)
    ending = _LOSSES.get(key)
    if ending is None:
        if len(_LOSSES) >= 1024:
            _LOSSES.clear()
        ending = _LOSSES[key] = decide(
            Evidence(
                finished=finished,
                loss=loss,
                server=server,
                peer=peer,
                stream=stream,
                closing=closing,
                peer_timed_out=peer_timed_out,
                shutdown=shutdown,
                tls=tls,
                tcp=tcp,
            )
        )
    return ending


class PeerSign(enum.Enum):
    """
    What a connection's watch saw of its client while the request in hand
    was not reading it.
    """

    # By identity, in C: Enum hashes the name in Python, a call per lookup of
    # the counters keyed by these (several per interruption).
    __hash__ = object.__hash__

    TCP_RESET = "the kernel's TCP state is CLOSE: a RST came"
    TCP_FIN = "the kernel's TCP state is CLOSE_WAIT: a FIN came"
    HALF_CLOSED = "Twisted read the end of the client's sending half"
    STOPPED_READING = "an HTTP/2 answer's end waited on flow control too long"


PEER_RULES: tuple[tuple[str, Callable[[PeerSign, bool], bool], Ending | None], ...] = (
    ("a RST", lambda s, answers: s is PeerSign.TCP_RESET, Ending.CLIENT_RESET),
    (
        "a FIN, where a half-close is answered: still there",
        lambda s, answers: s is PeerSign.TCP_FIN and answers,
        None,
    ),
    ("a FIN", lambda s, answers: s is PeerSign.TCP_FIN, Ending.CLIENT_CLOSED),
    ("a half-close", lambda s, answers: s is PeerSign.HALF_CLOSED, _HALF_CLOSED),
    (
        "stopped reading",
        lambda s, answers: s is PeerSign.STOPPED_READING,
        Ending.CLIENT_STOPPED_READING,
    ),
)
"""
From what a connection's watch saw (and whether half-closes are answered)
to the ending it hands the request in hand, or C{None}: the client is
still there.  The first row that holds.
"""


def peer_ending(sign: PeerSign, answers_half_close: bool = False) -> Ending | None:
    """
    The ending L{PEER_RULES} give for C{sign}: C{None} if the client is
    still there.
    """
    for _why, holds, ending in PEER_RULES:
        if holds(sign, answers_half_close):
            return ending
    raise AssertionError(f"no rule for {sign}")  # pragma: no cover
