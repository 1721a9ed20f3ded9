"""
Tie pending work to a request's life: when the client goes away first,
cancel the work and report one L{Outcome}; when the request completes,
count it and let go of the work.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, cast, runtime_checkable

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.iweb import IRequest

from ._ledger import Ending, Ledger, Outcome

__all__ = ["Cancellable", "RequestWatch", "cancel_on_disconnect", "classify"]

log = Logger(namespace="twisted_close")

INTERRUPTED_FORMAT = (
    "Connection interrupted: {method} {path} from {client} "
    "after {elapsed:.2f} s ({reason}{detail})"
)


@runtime_checkable
class Cancellable(Protocol):
    """
    Anything with C{cancel()}: an C{IDelayedCall}, a C{Deferred}, a task.
    """

    def cancel(self) -> None: ...


def classify(reason: Failure) -> Ending:
    """
    Say how a connection ended from the failure Twisted gave for it.
    """
    # ConnectionAborted subclasses ConnectionLost: it must be tested first.
    if reason.check(ConnectionDone):
        return Ending.CLIENT_CLOSED
    if reason.check(ConnectionAborted):
        return Ending.SERVER_ABORTED
    if reason.check(ConnectionLost):
        # HTTP/2 (twisted.web._http2.H2Connection) hands a stream a plain
        # ConnectionLost whatever happened: only the message tells a stream
        # reset apart.  A client's RST_STREAM gives "Stream reset with code 8"
        # ("... code ErrorCodes.CANCEL" on Python 3.10) to that stream alone;
        # its siblings and the connection go on.  The whole connection going
        # reaches every stream first through H2Connection.stopProducing() as
        # "Producing stopped", whatever the transport's reason: a clean close,
        # a FIN and a RST cannot be told apart, so it is only "lost".
        args: tuple[object, ...] = getattr(reason.value, "args", ())
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


def _printable(raw: bytes) -> str:
    # Request paths come from the network: keep log lines on one line.
    text = raw.decode("utf-8", "backslashreplace")
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def describe_client(request: IRequest) -> str:
    """
    C{host:port} of the request's peer, C{[host]:port} for IPv6.
    """
    address = request.getClientAddress()
    if isinstance(address, IPv6Address):
        return f"[{address.host}]:{address.port}"
    if isinstance(address, IPv4Address):
        return f"{address.host}:{address.port}"
    if isinstance(address, UNIXAddress):
        return "unix:" + _printable(address.name or b"")
    return str(address)


def _cancel(item: Cancellable) -> bool:
    """
    Cancel C{item} if it is still pending; say whether it was.
    """
    active = getattr(item, "active", None)
    if active is not None and not active():
        # IDelayedCall.cancel() raises once the call has run or was cancelled.
        return False
    # Deferred.cancel() is harmless after it fired (and reaches a Deferred it
    # is waiting on), so it is called either way; it only counts if unfired.
    was_pending = not getattr(item, "called", False)
    item.cancel()
    return was_pending


def _already_over(request: IRequest) -> tuple[bool, bool]:
    """
    Whether C{request} has finished, and whether it has lost its connection.

    C{notifyFinish()} on such a request returns a Deferred that never fires
    (Twisted #4899), so it must be asked before, not after.
    """
    finished = bool(getattr(request, "finished", False))
    # twisted.web has no public flag for a lost connection: Request sets
    # _disconnected in connectionLost; finished stays False then.
    gone = bool(getattr(request, "_disconnected", False))
    return finished, gone


class RequestWatch:
    """
    The pending work of one request, cancelled if the client leaves first.

    Made by L{cancel_on_disconnect}; use L{add} to tie more work to the
    same request later in its life.
    """

    def __init__(
        self, request: IRequest, clock: IReactorTime, ledger: Ledger | None
    ) -> None:
        self._request = request
        self._clock = clock
        self._ledger = ledger
        self._started = clock.seconds()
        self._pending: dict[int, Cancellable] = {}
        self._method = _printable(request.method)
        self._path = _printable(request.path)
        self._client = describe_client(request)
        self.outcome: Outcome | None = None
        """How the request ended, once it has."""
        self.detail: Callable[[], str] | None = None
        """Called at the end for more words, e.g. C{"3 events sent"}."""

        finished, gone = _already_over(request)
        if finished:
            self.outcome = self._outcome(Ending.COMPLETED, 0)
            return
        if ledger is not None:
            ledger.begin(self)
        if gone:
            self._interrupted(Ending.ALREADY_GONE)
            return
        # IRequest lacks notifyFinish(); every twisted.web request has it.
        finishing = cast(http.Request, request).notifyFinish()
        finishing.addCallbacks(self._completed, self._lost)

    def add(self, *items: Cancellable) -> None:
        """
        Tie more pending work to the request.  If the client has already
        left, the items are cancelled at once.
        """
        for item in items:
            if not isinstance(item, Cancellable):
                raise TypeError(f"{item!r} has no cancel() method")
        if self.outcome is not None:
            if self.outcome.ending.interrupted:
                for item in items:
                    _cancel(item)
            return
        for item in items:
            self._pending[id(item)] = item

    def _outcome(self, ending: Ending, cancelled: int) -> Outcome:
        return Outcome(
            method=self._method,
            path=self._path,
            client=self._client,
            elapsed=self._clock.seconds() - self._started,
            ending=ending,
            cancelled=cancelled,
            detail="" if self.detail is None else self.detail(),
        )

    def _end(self, outcome: Outcome) -> None:
        self.outcome = outcome
        if self._ledger is not None:
            self._ledger.end(self, outcome)

    def _completed(self, ignored: object) -> None:
        self._pending.clear()
        self._end(self._outcome(Ending.COMPLETED, 0))

    def _lost(self, reason: Failure) -> None:
        self._interrupted(classify(reason))

    def _interrupted(self, ending: Ending) -> None:
        items = list(self._pending.values())
        self._pending.clear()
        cancelled = 0
        for item in items:
            try:
                cancelled += _cancel(item)
            except Exception:
                log.failure("Cancelling {item!r} failed", item=item)
        outcome = self._outcome(ending, cancelled)
        self._end(outcome)
        log.info(
            INTERRUPTED_FORMAT,
            outcome=outcome,
            method=outcome.method,
            path=outcome.path,
            client=outcome.client,
            elapsed=outcome.elapsed,
            reason=outcome.reason,
            detail=f"; {outcome.detail}" if outcome.detail else "",
            cancelled=cancelled,
        )


def cancel_on_disconnect(
    request: IRequest,
    *pending: Cancellable,
    ledger: Ledger | None = None,
    clock: IReactorTime | None = None,
) -> RequestWatch:
    """
    Cancel C{pending} work if C{request}'s client goes away before the
    response is finished, and report that interruption once.

    @param request: the twisted.web request that owns the work.
    @param pending: C{IDelayedCall}s, C{Deferred}s or anything with
        C{cancel()}; more can be added later with L{RequestWatch.add}.
    @param ledger: where to count the request, if anywhere.
    @param clock: the time source for elapsed seconds; the global reactor
        by default.
    """
    if clock is None:
        from twisted.internet import reactor as _reactor

        clock = cast(IReactorTime, _reactor)
    assert clock is not None
    watch = RequestWatch(request, clock, ledger)
    watch.add(*pending)
    return watch
