"""
L{DelayedResource}: answer after a delay, unless the client leaves first.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IRequest
from twisted.web.server import NOT_DONE_YET

from ._delay import DelayError, parse_delay
from ._http import plain_error
from ._ledger import Ledger
from ._policy import DEFAULT_POLICY, ConnectionPolicy
from ._resource import WorkResource

__all__ = ["DelayedResource"]

_PARSED = 256
"""The most C{?delay=} values kept parsed at once."""


class DelayedResource(WorkResource):
    """
    Answer C{GET} and C{HEAD} with C{body} after C{delay} seconds; if the
    client goes away first, cancel the answer and report the interruption.

    A request may ask for its own delay with C{?delay=S} (decimal seconds,
    C{0 <= S <= max_delay}); anything else gets C{400} with a reason.
    The resource is a leaf: it answers for every path below it.
    """

    allowed = (b"GET", b"HEAD")

    def __init__(
        self,
        body: bytes | str = b"hello",
        delay: float = 10.0,
        *,
        max_delay: float = 60.0,
        clock: IReactorTime | None = None,
        ledger: Ledger | None = None,
        policy: ConnectionPolicy = DEFAULT_POLICY,
        max_body: int | None = None,
    ) -> None:
        """
        @param body: the answer; C{str} is sent as UTF-8.
        @param delay: seconds to wait when the request does not say.
        @param max_delay: the largest C{?delay=} a request may ask for.
        @param clock: schedules the answers; the global reactor by default.
        @param ledger: counts pending, completed, interrupted and rejected
            requests; a new one by default.
        @param policy: handed to each watch (see L{WorkResource}).
        @param max_body: the most bytes of request body taken, else
            C{413} (see L{WorkResource}); C{None}: any.
        """
        if not 0 <= delay <= max_delay:
            raise ValueError(f"delay {delay!r} is not within 0..{max_delay!r}")
        super().__init__(clock=clock, ledger=ledger, policy=policy, max_body=max_body)
        self.body = body.encode("utf-8") if isinstance(body, str) else body
        self.delay = delay
        self.max_delay = max_delay
        self._parsed: dict[bytes, float] = {}

    def begin(self, request: IRequest) -> bytes | int:
        try:
            delay = self._requested_delay(request)
        except DelayError as e:
            self.ledger.reject()
            return plain_error(request, 400, str(e))
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        request.setHeader(b"Content-Length", b"%d" % (len(self.body),))
        self.watch(request, self.clock.callLater(delay, self._answer, request))
        return NOT_DONE_YET

    def _requested_delay(self, request: IRequest) -> float:
        values = (request.args or {}).get(b"delay")
        if values is None:
            return self.delay
        if len(values) > 1:
            raise DelayError("delay is given more than once")
        # Clients ask for the same few delays: each is parsed once.
        given = values[0]
        delay = self._parsed.get(given)
        # Parsed again if the maximum was lowered since: it says why not.
        if delay is None or delay > self.max_delay:
            try:
                text = given.decode("ascii")
            except UnicodeDecodeError:
                raise DelayError(
                    "delay is not a number of seconds such as 2 or 0.5"
                ) from None
            delay = parse_delay(text, self.max_delay)
            if len(self._parsed) >= _PARSED:
                self._parsed.clear()
            self._parsed[given] = delay
        return delay

    def _answer(self, request: IRequest) -> None:
        # Only reached while the client is still there: a disconnect cancels
        # this call first, so write() and finish() cannot hit a dead request.
        request.write(self.body)
        request.finish()
