"""
L{WorkResource}: the one opening of every resource that takes on work:
method check, then admission, then the work, watched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource

from ._body import checked_max_body, too_large
from ._cancellation import Cancellable
from ._clock import default_clock
from ._http import not_allowed, plain_error, refusal
from ._ledger import Ledger
from ._outcome import Ending, Rejection
from ._policy import DEFAULT_POLICY, ConnectionPolicy
from ._twisted.request import body_length, keep_alive_off
from ._watch import RequestWatch, settle_earlier_answers

__all__ = ["WorkResource"]


class WorkResource(Resource):
    """
    A leaf that takes on work for a request and answers later.

    L{render} answers a method it does not take with C{405} and C{Allow};
    then, if L{admit} refuses (past a cap of the ledger's L{Limits}, during a
    graceful drain), C{503} with C{Retry-After} at once, counted as rejected;
    only then does L{begin}, the subclass's own part, take on the work and
    tie it to the request with L{watch}.

    @cvar allowed: the methods answered.
    @cvar retry_after: the C{Retry-After} seconds of a C{503}.
    @cvar endless: whether the answer is a stream that never completes by
        itself: admitted against the streams' caps of the ledger's L{Limits},
        not C{max_pending}.
    @ivar clock: schedules the work and times the outcomes.
    @ivar ledger: counts the requests and holds them while pending.
    @ivar policy: handed to each request's watch (see L{RequestWatch}).
    @ivar max_body: the most bytes of request body taken, or C{None}.
    """

    isLeaf = True
    allowed: Sequence[bytes] = (b"GET", b"HEAD")
    retry_after = 1
    endless = False

    def __init__(
        self,
        *,
        clock: IReactorTime | None = None,
        ledger: Ledger | None = None,
        policy: ConnectionPolicy = DEFAULT_POLICY,
        max_body: int | None = None,
    ) -> None:
        """
        @param clock: the global reactor by default.
        @param ledger: a new one by default.
        @param policy: what a client's half-close means, and how long a
            finished HTTP/2 answer may wait on a client that reads nothing.
        @param max_body: the most bytes of request body taken: a request
            with more is answered C{413}, counted as rejected, and its
            connection closed; C{0}: no body; C{None} (the default): any.
            twisted.web reads a body whole before any resource sees it:
            for the bound to act while the body arrives, and keep it out
            of temporary files, bound the site with
            L{twisted_close.bound_request_bodies} too.
        @raise ValueError: if C{max_body} is not C{None} nor a whole
            number >= 0.
        """
        super().__init__()  # type: ignore[no-untyped-call]
        self.max_body = None if max_body is None else checked_max_body(max_body)
        self.clock = default_clock(clock)
        self.ledger = Ledger(self.clock) if ledger is None else ledger
        self.policy = policy

    def answers(self, method: bytes) -> bool:
        """
        Whether C{method} is answered here; else C{405}.
        """
        return method in self.allowed

    def allowed_methods(self) -> Sequence[bytes]:
        """
        The methods named in a C{405}'s C{Allow}.
        """
        return self.allowed

    def admit(self, request: IRequest) -> Rejection | None:
        """
        Whether C{request} may take on work: C{None}, or why not.  By
        default, as the ledger's L{Limits} say (shutting down,
        C{max_pending}, the streams' caps, the request's client's share).
        """
        return self.ledger.limits.admit(request, stream=self.endless)

    def refuse(self, request: IRequest, reason: Rejection) -> bytes:
        """
        Turn C{request} away for C{reason}: count it and answer C{503}.
        """
        self.ledger.reject(reason)
        closing = reason is Rejection.SHUTTING_DOWN
        return refusal(request, reason, self.retry_after, close=closing)

    def render(self, request: IRequest) -> bytes | int:
        """
        Method check, admission, then L{begin}.
        """
        if not self.answers(request.method):
            return not_allowed(request, self.allowed_methods())
        if self.max_body is not None:
            length = body_length(request)
            if length > self.max_body:
                self.ledger.reject(Rejection.BODY_TOO_LARGE)
                request.setHeader(b"Connection", b"close")
                keep_alive_off(request)
                why = too_large(self.max_body, length).decode("ascii").strip()
                return plain_error(request, 413, why)
        settle_earlier_answers(request)
        if (reason := self.admit(request)) is not None:
            return self.refuse(request, reason)
        return self.begin(request)

    def begin(self, request: IRequest) -> bytes | int:
        """
        Take on the work of C{request}, admitted; return its answer or
        C{NOT_DONE_YET}.  Subclasses say what their work is here.
        """
        raise NotImplementedError

    def watch(
        self,
        request: IRequest,
        *pending: Cancellable,
        detail: Callable[[], str] | None = None,
        on_server_end: Callable[[Ending, int], None] | None = None,
    ) -> RequestWatch:
        """
        Tie C{pending} work to C{request} in this resource's ledger: it is
        cancelled, and the request reported, if the client leaves first.
        C{detail} and C{on_server_end} are the watch's (see L{RequestWatch}).
        """
        return RequestWatch(
            request,
            self.clock,
            self.ledger,
            endless=self.endless,
            policy=self.policy,
            detail=detail,
            on_server_end=on_server_end,
            pending=pending,
        )
