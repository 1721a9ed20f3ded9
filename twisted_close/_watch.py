"""
Tie pending work to a request's life: when the client goes away first,
cancel the work and report one L{Outcome}; when the request completes,
count it and let go of the work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Literal

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest

from ._cancellation import Cancellable, cancel
from ._clock import default_clock
from ._connection import ConnectionWatch
from ._delivery import Connection, deliveries
from ._endings import Evidence, PeerSign, decide, decide_loss, peer_ending
from ._http import unavailable
from ._ledger import Ledger
from ._outcome import Ending, Outcome
from ._policy import DEFAULT_POLICY, ConnectionPolicy
from ._shutdown import watch_shutdown
from ._text import describe_client, printable, raw_text
from ._twisted.channel import NETWORK_PRODUCER, stays_open
from ._twisted.failures import loss_of
from ._twisted.h2 import (
    abort_stream,
    record_stream_loss,
    stream_blocked,
    stream_end_pending,
)
from ._twisted.request import (
    channel_of,
    keep_alive_off,
    request_state,
    server_closing,
    transport_of,
)
from ._twisted.tcp import connection_ended, peer_timed_out, unsent_bytes
from ._twisted.tls import is_tls, tls_tcp_reason

__all__ = ["RequestWatch", "cancel_on_disconnect", "classify", "settle_earlier_answers"]

log = Logger(namespace="twisted_close")


_DELIVERING = "delivering"
# The facts of the common endings, made once: one per request otherwise.
_ACKNOWLEDGED = (_DELIVERING, "acknowledged", 0)
_WRITTEN = (_DELIVERING, "written", 0)
_UNKNOWN = (_DELIVERING, "unknown", 0)


def classify(reason: Failure) -> Ending:
    """
    Say how a connection ended from the failure Twisted gave for it alone,
    by the rules of L{twisted_close._endings} (a watched request knows
    more: see L{RequestWatch}).
    """
    return decide(Evidence(loss=loss_of(reason)))


class RequestWatch:
    """
    The pending work of one request, cancelled if the client leaves first.

    Made by L{cancel_on_disconnect}; use L{add} to tie more work to the
    same request later in its life.

    @ivar endless: whether the request never completes by itself (an event
        stream): a graceful shutdown ends it at once instead of waiting.
    """

    # One of these lives per pending request: keep it small and cheap to
    # make; the words of the outcome are only put together when asked for.
    __slots__ = (
        "_cancelled",
        "_channel",
        "_clock",
        "_detail_of",
        "_ended_at",
        "_ending",
        "_facts",
        "_ledger",
        "_on_server_end",
        "_peer_ending",
        "_pending",
        "_policy",
        "_request",
        "_server_ending",
        "_started",
        "endless",
    )

    def __init__(
        self,
        request: IRequest,
        clock: IReactorTime,
        ledger: Ledger,
        *,
        endless: bool = False,
        policy: ConnectionPolicy = DEFAULT_POLICY,
        detail: Callable[[], str] | None = None,
        on_server_end: Callable[[Ending, int], None] | None = None,
        pending: tuple[Cancellable, ...] = (),
    ) -> None:
        """
        @param request: the request watched.
        @param clock: times the outcome.
        @param ledger: counts the request while it is pending, then its end.
        @param endless: whether the request never completes by itself (an
            event stream): counted as a stream, and a graceful shutdown
            ends it at once instead of waiting.
        @param policy: what a half-close means, and how long a finished
            HTTP/2 answer may wait on a client that reads nothing.
        @param detail: called at the end for more words, e.g. C{"3 events
            sent"}.
        @param on_server_end: how the owner answers when the server ends the
            request (L{end_by_server}); by default a C{503}.
        @param pending: work tied to the request from the start, as if
            given to L{add} at once.
        @raise TypeError: if an item of C{pending} has no C{cancel()}.
        """
        # Checked before the ledger counts the request: a refused item
        # leaves nothing pending.
        pending = _cancellables(pending)
        self._request = request
        self._clock = clock
        self._ledger = ledger
        self._started = clock.seconds()
        # A tuple: a held request keeps a small one, not a list.
        self._pending = pending
        # The channel kept: the request drops it before the errback runs.
        self._channel = channel_of(request)
        finished, gone = request_state(request)
        self._server_ending: Ending | None = None
        self._ending: Ending | None = None
        self._ended_at = 0.0
        self._cancelled = 0
        self._peer_ending: Ending | None = None
        self._policy = policy
        # (phase, delivery, bytes not acknowledged), once known: one slot.
        self._facts: tuple[str, str, int] | None = None
        self._detail_of = detail
        self._on_server_end = on_server_end
        self.endless = endless
        # Asked now, so that the reactor's shutdown trigger is in place before
        # a shutdown could cut this request; asked again if one does.
        watch_shutdown(clock)

        if finished:
            # Nothing to watch: not counted, and notifyFinish() would not fire.
            self._ending = Ending.COMPLETED
            self._ended_at = self._started
            self._pending = ()
            return
        ledger.begin(self, request)
        if gone:
            self._interrupted(decide(Evidence(already_gone=True)))
            return
        connection = ConnectionWatch.of(self._channel, policy.half_close)
        if connection is not None:
            connection.watch = self
            delivering = connection.delivering
            if delivering:
                # Most likely settled already, as the request arrived
                # (settle_earlier_answers); not if it was watched directly.
                delivering.settle()
        # IRequest lacks notifyFinish(); every twisted.web request has it.
        finishing = request.notifyFinish()  # type: ignore[attr-defined]
        # The watch itself for both (__call__): a held request keeps no bound
        # method (64 bytes) for it.  Not addBoth(): its **kwargs is a new
        # dictionary kept as long (64 bytes more).
        finishing.addCallbacks(self, self)

    @property
    def clock(self) -> IReactorTime:
        """
        The time source of the watch.
        """
        return self._clock

    @property
    def request(self) -> IRequest:
        """
        The request watched.
        """
        return self._request

    @property
    def transport(self) -> object:
        """
        The transport of the request's connection: its channel's, or for an
        HTTP/2 stream (whose own C{transport} is None) its connection's.
        """
        return transport_of(self._channel)

    @property
    def outcome(self) -> Outcome | None:
        """
        How the request ended, once it has: who, what, how, after how long.
        """
        if self._ending is None:
            return None
        # Made when asked, not kept: a held request is smaller without it,
        # and only a logged or observed ending is asked for its outcome.
        request = self._request
        phase, delivery, unacknowledged = self._facts or (_DELIVERING, "", 0)
        return Outcome(
            method=raw_text(request.method),
            path=raw_text(request.path),
            client=describe_client(request),
            elapsed=self._ended_at - self._started,
            ending=self._ending,
            cancelled=self._cancelled,
            detail=self._detail(),
            phase=phase,
            delivery=delivery,
            unacknowledged=unacknowledged,
        )

    def _detail(self) -> str:
        detail = "" if self._detail_of is None else self._detail_of()
        unacknowledged = self._facts[2] if self._facts is not None else 0
        if unacknowledged:
            words = f"{unacknowledged} bytes not acknowledged"
            return f"{words}; {detail}" if detail else words
        if self._ending is Ending.CLIENT_HALF_CLOSED:
            # Not cut short: the answer went, though perhaps not read.
            return f"answered; {detail}" if detail else "answered"
        return detail

    def add(self, *items: Cancellable) -> None:
        """
        Tie more pending work to the request.  If the client has already
        left, the items are cancelled at once.
        """
        items = _cancellables(items)
        if self._server_ending is not None or self._ending is not None:
            # Too late to wait on them: cancel them now, unless it completed.
            if self._ending is not Ending.COMPLETED:
                for item in items:
                    cancel(item)
            return
        self._pending = _without_repeats(self._pending, items)

    def end_by_server(self, ending: Ending, retry_after: int = 5) -> None:
        """
        The server ends the request before its answer (a graceful shutdown):
        cancel its pending work and answer through its C{on_server_end}, by
        default C{503} with C{Retry-After} and C{Connection: close}.  The
        outcome is C{ending}, not a completion nor a client's interruption.
        """
        if self._ending is not None or self._server_ending is not None:
            return
        if request_state(self._request)[0]:
            # Answered; over HTTP/2 its end may wait on the client (bounded
            # by the stall timeout): nothing to cancel or answer.
            return
        self._server_ending = ending
        self._facts = (self._phase(), "", 0)
        self.close_when_done()
        self._cancelled = self._cancel_all()
        answer = self._on_server_end or self._unavailable
        try:
            answer(ending, retry_after)
        except Exception:
            log.failure(
                "Ending {method} {path} failed",
                method=printable(self._request.method),
                path=printable(self._request.path),
            )

    def close_when_done(self) -> None:
        """
        Close the connection once this request's answer is out (HTTP/1.1;
        an HTTP/2 stream has no connection of its own).
        """
        keep_alive_off(self._request)

    def _unavailable(self, ending: Ending, retry_after: int) -> None:
        unavailable(self._request, str(ending.value), retry_after)

    @property
    def phase(self) -> str:
        """
        Where the answer is: C{"waiting"} (no byte of it sent),
        C{"answering"} (some sent), C{"delivering"} (all handed over, its
        acknowledgement awaited); once ended, where it was then.
        """
        if self._facts is not None:
            return self._facts[0]
        return self._phase()

    @property
    def acknowledged(self) -> bool:
        """
        Whether the client's TCP acknowledged the whole answer.
        """
        return self._facts is not None and self._facts[1] == "acknowledged"

    def _phase(self) -> str:
        request = self._request
        if request_state(request)[0]:
            return _DELIVERING
        return "answering" if getattr(request, "startedWriting", 0) else "waiting"

    def delivered(self) -> None:
        """
        The client's TCP acknowledged the answer's last byte: completed.
        """
        if self._ending is None:
            self._facts = _ACKNOWLEDGED
            if self._server_ending is None and self._peer_ending is None:
                # _end() for a completion, inline: once per request.
                self._ending = Ending.COMPLETED
                self._ended_at = now = self._clock.seconds()
                self._ledger.end(self, Ending.COMPLETED, now - self._started)
            else:
                self._end(decide(self._evidence()), 0)

    def undelivered(self, unacknowledged: int) -> None:
        """
        The connection ended with C{unacknowledged} bytes of the answer not
        acknowledged by the client's TCP.
        """
        if self._ending is None:
            self._facts = (_DELIVERING, "", unacknowledged)
            evidence = replace(
                self._evidence(),
                unacknowledged=unacknowledged,
                shutdown=self._shutting_down(),
            )
            self._end(decide(evidence), 0)

    def _handed_over(self, connection: ConnectionWatch | None = None) -> None:
        """
        The whole answer was handed to Twisted: completed at once, or once
        its client's TCP acknowledged it, where that can be known.

        @param connection: the watch of its HTTP/1.x connection, which
            keeps what was found of the connection for its next answers.
        """
        if self._policy.delivery == "written":
            self._facts = _WRITTEN
            self._end(Ending.COMPLETED, 0)
            return
        delivering = None if connection is None else connection.delivering
        if delivering is None:
            transport = transport_of(self._channel)
            if connection is not None and stays_open(self._channel):
                unsent = unsent_bytes(transport)
                if unsent:
                    # The first answer of its connection, still in Twisted's
                    # buffer: what is found of the connection (its TCP
                    # socket, a TCP_INFO read, its end hooked) once this
                    # turn's answers are written.
                    deliveries(self._clock).after_writes(
                        lambda: self._written(connection, transport, unsent)
                    )
                    return
            self._track(connection, transport)
            return
        self._track(connection, None, delivering)

    def _written(
        self, connection: ConnectionWatch, transport: object, unsent: int
    ) -> None:
        """
        The turn in which the first answer of C{connection} ended has written
        what it could: that answer is tracked now.
        """
        if connection_ended(transport):
            # Lost within that turn: the loss came in before the answer's
            # bytes (C{unsent}, all held by Twisted as it ended) could be
            # written, or their writing failed; never acknowledged.
            self.undelivered(unsent)
            return
        self._track(connection, transport, connection.delivering)

    def _track(
        self,
        connection: ConnectionWatch | None,
        transport: object,
        delivering: Connection | Literal[False] | None = None,
    ) -> None:
        """
        Wait for the acknowledgement of the answer on its connection:
        C{delivering}, or what is found of C{transport}'s (kept on the
        watch of its HTTP/1.x C{connection} for its next answers).
        """
        if delivering is None:
            delivering = deliveries(self._clock).connection(transport)
            if connection is not None:
                # False: it cannot be known here, and is not asked again.
                connection.delivering = delivering or False
                if delivering:
                    delivering.watch = connection
        if not delivering or not delivering.track(self):
            self._facts = _UNKNOWN
            self._end(Ending.COMPLETED, 0)

    def _end(self, ending: Ending, cancelled: int) -> None:
        if self._facts is None:
            self._facts = (self._phase(), "", 0)
        # Added to what a server's ending cancelled first, if it did.
        self._cancelled += cancelled
        self._ending = ending
        self._ended_at = now = self._clock.seconds()
        self._ledger.end(self, ending, now - self._started)

    def peer_left(self, ending: Ending) -> None:
        """
        The request's client was found gone (or half-closed) other than by
        the request hearing of it: C{ending} is how the request ends, by
        whatever path it ends.
        """
        if self._ending is None and self._server_ending is None:
            self._peer_ending = ending

    def __call__(self, result: object) -> None:
        """
        What C{notifyFinish()} tells, either way: its errback's C{Failure}
        when the connection was lost, else that the request finished.
        Called by the request's C{notifyFinish()} Deferred alone.
        """
        if isinstance(result, Failure):
            self._interrupted(self._ending_of_loss(result))
            connection = getattr(self._channel, NETWORK_PRODUCER, None)
            if isinstance(connection, ConnectionWatch):
                connection.lost()
            return
        self._pending = ()
        connection = getattr(self._channel, NETWORK_PRODUCER, None)
        if not isinstance(connection, ConnectionWatch):
            connection = None
        if (
            self._server_ending is None
            and self._peer_ending is None
            # Not an HTTP/1.x connection of its own (an HTTP/2 stream): its
            # end may still wait on flow control once the request finished.
            and connection is None
        ):
            sending = stream_end_pending(self._channel)
            if sending is not None:
                self._await_stream_end(sending)
                return
        if self._server_ending is None and self._peer_ending is None:
            # The common case, a completion, without gathering evidence.
            self._handed_over(connection)
            return
        self._end(decide(self._evidence()), 0)

    def _await_stream_end(self, sending: Deferred[object]) -> None:
        """
        An HTTP/2 answer is finished but its stream's end is queued behind
        what flow control holds back: it completes when the end goes out.
        """
        channel = self._channel
        lost: list[Failure] = []
        record_stream_loss(channel, lost.append)
        stall = None
        if stream_blocked(channel):
            stall = self._clock.callLater(
                self._policy.stall_timeout, self._stalled, channel
            )

        def done(ignored: object) -> None:
            if stall is not None and stall.active():
                stall.cancel()
            if not lost and self._peer_ending is None:
                self._handed_over()
                return
            self._end(
                self._ending_of_loss(lost[0], True)
                if lost
                else decide(self._evidence()),
                0,
            )

        sending.addCallback(done)

    def _stalled(self, channel: object) -> None:
        self._peer_ending = peer_ending(PeerSign.STOPPED_READING)
        abort_stream(channel)

    def _evidence(self) -> Evidence:
        """
        What is known of how this request ended, for L{decide}, when its
        answer was finished and its connection not lost.
        """
        return Evidence(
            finished=True, server=self._server_ending, peer=self._peer_ending
        )

    def _ending_of_loss(self, reason: Failure, finished: bool = False) -> Ending:
        """
        How this request ended, its connection lost for C{reason}, its
        answer C{finished} or not.
        """
        channel = self._channel
        stream, closing = server_closing(channel)
        transport = getattr(channel, "transport", None)
        tls = is_tls(transport)
        return decide_loss(
            finished,
            loss_of(reason),
            self._server_ending,
            self._peer_ending,
            stream,
            closing,
            peer_timed_out(channel),
            self._shutting_down(),
            tls,
            loss_of(tls_tcp_reason(transport)) if tls else None,
        )

    def _shutting_down(self) -> bool:
        # Whether the reactor is dropping every connection as it stops; begun
        # first: a plain flag, false in all but a server's last moments.
        shutdown = watch_shutdown(self._clock)
        return shutdown.begun and shutdown.cutting_connections

    def _cancel_all(self) -> int:
        items, self._pending = self._pending, ()
        cancelled = 0
        for item in items:
            try:
                cancelled += cancel(item)
            except Exception:
                log.failure("Cancelling {item!r} failed", item=item)
        return cancelled

    def _interrupted(self, ending: Ending) -> None:
        self._end(ending, self._cancel_all())


def _cancellables(items: tuple[object, ...]) -> tuple[Cancellable, ...]:
    """
    C{items}, each checked to have a C{cancel()}, no item twice.

    @raise TypeError: for one that has none.
    """
    for item in items:
        # Not isinstance(item, Cancellable): a runtime protocol check
        # costs more than the rest of a request's bookkeeping.
        if not callable(getattr(item, "cancel", None)):
            raise TypeError(f"{item!r} has no cancel() method")
    if len(items) > 1:
        return _without_repeats((), items)  # type: ignore[arg-type]
    return items  # type: ignore[return-value]


def _without_repeats(
    known: tuple[Cancellable, ...], items: tuple[Cancellable, ...]
) -> tuple[Cancellable, ...]:
    # By identity: two Deferreds may compare equal.
    for item in items:
        for seen in known:
            if seen is item:
                break
        else:
            known += (item,)
    return known


def settle_earlier_answers(request: IRequest) -> None:
    """
    Settle the answers before C{request} on its connection that the client
    acknowledged by now: asked as a request arrives, before it is admitted,
    since those answers count against the client's caps until settled.  Its
    client most likely acknowledged them before it asked again.  Settled at
    this request's end instead, they outlived a collection of the youngest
    objects, and the cyclic collector ran once in ~60 requests, not never.
    """
    connection = getattr(channel_of(request), NETWORK_PRODUCER, None)
    if isinstance(connection, ConnectionWatch):
        delivering = connection.delivering
        if delivering:
            delivering.settle()


def cancel_on_disconnect(
    request: IRequest,
    *pending: Cancellable,
    ledger: Ledger | None = None,
    clock: IReactorTime | None = None,
    endless: bool = False,
    policy: ConnectionPolicy = DEFAULT_POLICY,
    detail: Callable[[], str] | None = None,
    on_server_end: Callable[[Ending, int], None] | None = None,
) -> RequestWatch:
    """
    Cancel C{pending} work if C{request}'s client goes away before the
    response is finished, and report that interruption once.

    @param request: the twisted.web request that owns the work.
    @param pending: C{IDelayedCall}s, C{Deferred}s, asyncio C{Task}s and
        C{Future}s, or anything with C{cancel()}; more can be added later
        with L{RequestWatch.add}.
    @param ledger: where to count and report the request; without one, the
        interruption is still logged.
    @param clock: the time source for elapsed seconds; the global reactor
        by default.
    @param endless: whether the request never completes by itself (an
        event stream): its ledger does not count it as pending work.
    @param policy: see L{RequestWatch}; so are C{detail} and
        C{on_server_end}.
    """
    clock = default_clock(clock)
    return RequestWatch(
        request,
        clock,
        Ledger(clock) if ledger is None else ledger,
        endless=endless,
        policy=policy,
        detail=detail,
        on_server_end=on_server_end,
        pending=pending,
    )
