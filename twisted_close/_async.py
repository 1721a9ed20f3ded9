"""
L{AsyncResource}: write C{async def render_GET(self, request)} and have the
coroutine cancelled when the client leaves first.

The coroutine runs through C{Deferred.fromCoroutine}, so it awaits
C{Deferred}s (and anything else that C{Deferred.fromCoroutine} accepts); on
the asyncio reactor it runs as an asyncio Task and may await asyncio things
too (see L{twisted_close._asyncio}); the request is watched by
L{cancel_on_disconnect}, so an interruption is reported exactly as for
L{DelayedResource}: one L{Outcome} in the L{Ledger} and one log event.
"""

from __future__ import annotations

from collections.abc import Callable, Set
from inspect import iscoroutine
from typing import ClassVar, cast

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from ._asyncio import AsyncioReactorNeeded, asyncio_event_loop, run_coroutine
from ._cancellation import is_cancellation
from ._http import plain_error
from ._ledger import Ledger
from ._policy import DEFAULT_POLICY, ConnectionPolicy
from ._resource import WorkResource
from ._text import describe_client, printable
from ._twisted.request import abort_connection, request_state

__all__ = ["SAFE_METHODS", "AsyncResource"]

log = Logger(namespace="twisted_close")

SAFE_METHODS: frozenset[bytes] = frozenset({b"GET", b"HEAD", b"OPTIONS"})
"""
The methods whose work is cancelled by default when the client leaves: they
only read, so stopping them half-way leaves nothing half-done.
"""

FAILED_FORMAT = "{method} {path} from {client} failed in {handler}"
NEEDS_ASYNCIO_FORMAT = FAILED_FORMAT + ": {why}"


class AsyncResource(WorkResource):
    """
    A resource whose C{render_METHOD} methods may be coroutines.

    Subclass it and write C{async def render_GET(self, request)} (or any
    other C{render_METHOD}); return the body as C{bytes}::

        class Report(AsyncResource):
            isLeaf = True

            def __init__(self, db, clock: IReactorTime) -> None:
                super().__init__(clock=clock)
                self.db = db

            async def render_GET(self, request: IRequest) -> bytes:
                rows = await self.db.runQuery("SELECT ...")
                request.setHeader(b"Content-Type", b"application/json")
                return json.dumps(rows).encode()

    The returned bytes are sent with a C{Content-Length} and the request is
    finished, as for a plain C{render_GET}.  A coroutine that finishes the
    request itself should return C{None}.  C{render_GET} answers C{HEAD} too
    when there is no C{render_HEAD} (C{request.method} says which; no body
    is sent).  A method with no C{render_METHOD} gets C{405} with C{Allow}.
    A C{render_METHOD} that returns a C{Deferred} (an C{@inlineCallbacks}
    method) is treated like a coroutine; any other return value is handed to
    twisted.web as from a plain C{Resource}.

    On the asyncio reactor (C{twistd -r asyncio}; the C{clock} given, or
    the global reactor, is an C{AsyncioSelectorReactor}) the coroutine runs
    as an asyncio Task tied to the request: it may await C{asyncio.sleep},
    an aiohttp call or an asyncio lock as well as C{Deferred}s, and its
    cancellation raises asyncio's C{CancelledError} at an asyncio C{await}
    (Twisted's at a C{Deferred}).  On another reactor, a coroutine that uses
    asyncio is answered C{500} and logged in one line that says to run on
    the asyncio reactor.

    If the client leaves first, the coroutine is cancelled: C{CancelledError}
    is raised at the C{await} it is waiting on, its C{finally} blocks run, and
    nothing is written to the dead request.  An exception becomes a C{500}
    with a one-line C{text/plain} body and is logged once with its traceback;
    the client never sees the traceback.  So does returning anything but
    C{bytes}, or anything but C{None} after finishing the request.

    Only the methods in L{cancel_methods} are cancelled: by default the safe
    ones, C{GET}, C{HEAD} and C{OPTIONS}.  C{POST}, C{PUT}, C{PATCH},
    C{DELETE} and other unsafe methods run to completion even when the client
    has gone, because cancelling a write half-way can leave its side effects
    half-done (a row inserted, the e-mail about it never sent; see Klein issue
    #546).  Their answer is then discarded and the request still counts as
    interrupted.  (A coroutine that writes and finishes the request itself
    meets twisted.web's C{RuntimeError} from C{finish()} once the client has
    gone: return the body instead.)  A resource whose writes are safe to stop
    opts in with C{cancel_unsafe_methods = True}, or names its methods in
    C{cancel_methods}.

    @cvar cancel_methods: the methods (C{bytes}) whose work is cancelled when
        the client leaves; L{SAFE_METHODS} by default.
    @cvar cancel_unsafe_methods: cancel every method, whatever
        C{cancel_methods} says.
    @ivar clock: the time source for elapsed seconds in the outcomes; give
        the same to C{deferLater} in the coroutines, so tests can use a
        C{Clock}.
    @ivar ledger: counts pending, completed and interrupted requests.
    """

    # Not a leaf unless a subclass says so, as a plain Resource.
    isLeaf = False
    cancel_methods: ClassVar[Set[bytes]] = SAFE_METHODS
    cancel_unsafe_methods: ClassVar[bool] = False

    def __init__(
        self,
        *,
        clock: IReactorTime | None = None,
        ledger: Ledger | None = None,
        policy: ConnectionPolicy = DEFAULT_POLICY,
    ) -> None:
        """
        @param clock: the time source for elapsed seconds; the global reactor
            by default.
        @param ledger: counts the requests; a new one by default.
        @param policy: handed to each watch (see L{WorkResource}).
        """
        for method in self.cancel_methods:
            if not isinstance(method, bytes):
                raise TypeError(
                    f"cancel_methods holds {method!r}; give bytes such as b'GET'"
                )
        super().__init__(clock=clock, ledger=ledger, policy=policy)

    def cancels(self, method: bytes) -> bool:
        """
        Whether a request with C{method} has its work cancelled when the
        client leaves first.
        """
        return self.cancel_unsafe_methods or method in self.cancel_methods

    def allowed_methods(self) -> list[bytes]:
        """
        The methods this resource answers: one per C{render_METHOD}, and
        C{HEAD} wherever there is C{GET}.
        """
        methods = set()
        for name in dir(type(self)):
            method = name.removeprefix("render_")
            if method != name and method.isupper() and self._defines(name):
                methods.add(method.encode("ascii"))
        if b"GET" in methods:
            methods.add(b"HEAD")
        return sorted(methods)

    def _defines(self, name: str) -> bool:
        # Resource.render_HEAD calls render_GET, which may not exist: only
        # methods of subclasses count.
        found = getattr(type(self), name, None)
        return callable(found) and found is not getattr(Resource, name, None)

    def _handler(self, method: bytes) -> tuple[str, Callable[[IRequest], object]]:
        try:
            name = "render_" + method.decode("ascii")
        except UnicodeDecodeError:
            raise AttributeError("render_?") from None
        if method == b"HEAD" and not self._defines(name):
            name = "render_GET"
        if not self._defines(name):
            raise AttributeError(name)
        handler: Callable[[IRequest], object] = getattr(self, name)
        return name, handler

    def answers(self, method: bytes) -> bool:
        try:
            self._handler(method)
        except AttributeError:
            return False
        return True

    def begin(self, request: IRequest) -> bytes | int:
        """
        Run C{render_METHOD} for C{request}; see L{AsyncResource}.
        """
        name, handler = self._handler(request.method)
        cancellable = self.cancels(request.method)
        rendering = _Rendering(request, name, cancellable)
        # Work that is not cancelled says so in the outcome of its request.
        watch = self.watch(request, detail=None if cancellable else rendering.detail)
        if watch.outcome is not None and cancellable:
            # The client left before we began: there is no work to cancel.
            return NOT_DONE_YET
        result = handler(request)
        if iscoroutine(result):
            # Asked of the clock at each request (cheap), not at import.
            loop = asyncio_event_loop(self.clock)
            work: Deferred[object] = run_coroutine(result, loop)
        elif isinstance(result, Deferred):
            work = result
        else:
            return cast("bytes | int", result)
        if cancellable:
            watch.add(work)
        work.addCallback(rendering.answer)
        work.addErrback(rendering.failed)
        work.addErrback(rendering.bug)
        return NOT_DONE_YET


class _Rendering:
    """
    One request's coroutine on its way to an answer, or to none.
    """

    def __init__(self, request: IRequest, handler: str, cancellable: bool) -> None:
        self.request = request
        self.handler = handler
        self.cancellable = cancellable
        self.running = True

    @property
    def finished(self) -> bool:
        return request_state(self.request)[0]

    @property
    def gone(self) -> bool:
        # request.finished stays False after a disconnect; the watch's outcome
        # is only set once the cancellation has run, too late for us.
        return request_state(self.request)[1]

    def detail(self) -> str:
        """
        For the outcome of an interruption that is not cancelled.
        """
        if self.running and self.gone:
            method = printable(self.request.method)
            return f"{method} is not cancelled; it runs to completion"
        return ""

    def answer(self, body: object) -> None:
        self.running = False
        if self.finished:
            # The coroutine answered itself; nothing more to send.
            if body is not None:
                raise TypeError(
                    f"{self.handler} finished the request and returned "
                    f"{type(body).__name__}; return None after finish()"
                )
            return
        if not isinstance(body, bytes):
            raise TypeError(
                f"{self.handler} returned {type(body).__name__}, not bytes; "
                "return bytes, or finish the request and return None"
            )
        if self.gone:
            # Nobody to answer: the work ran to completion, or ignored its
            # cancellation.  finish() would raise RuntimeError.
            return
        request = self.request
        if not cast("http.Request", request).startedWriting:
            request.setHeader(b"Content-Length", b"%d" % (len(body),))
        if request.method != b"HEAD":
            request.write(body)
        request.finish()

    def failed(self, reason: Failure) -> None:
        self.running = False
        if self.gone and self.cancellable and is_cancellation(reason):
            # The watch cancelled it because the client left: all as planned.
            return
        request = self.request
        method, path = printable(request.method), printable(request.path)
        client = describe_client(request)
        if reason.check(AsyncioReactorNeeded):
            # A deployment choice, not a bug: one line that says the fix.
            log.error(
                NEEDS_ASYNCIO_FORMAT,
                method=method,
                path=path,
                client=client,
                handler=self.handler,
                why=str(reason.value),
            )
        else:
            log.failure(
                FAILED_FORMAT,
                reason,
                method=method,
                path=path,
                client=client,
                handler=self.handler,
            )
        if self.gone or self.finished:
            return
        if cast("http.Request", request).startedWriting:
            # The status line is out: the client can only learn of the failure
            # from a response cut short.
            if not abort_connection(request):
                cast("http.Request", request).loseConnection()
            return
        request.write(plain_error(request, 500, "internal server error"))
        request.finish()

    def bug(self, reason: Failure) -> None:
        # Only reached if answer() or failed() themselves broke: log it rather
        # than leave an unhandled error in a Deferred.
        log.failure("Answering {handler} failed", reason, handler=self.handler)
