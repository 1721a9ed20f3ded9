"""
Answers for requests we refuse: short, plain text, one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from twisted.web import http
from twisted.web.iweb import IRequest

from ._outcome import Rejection
from ._text import printable
from ._twisted.request import keep_alive_off

__all__ = ["not_allowed", "plain_error", "refusal", "unavailable"]


def plain_error(request: IRequest, code: int, reason: str) -> bytes:
    """
    Answer C{request} with C{code} and a one-line C{text/plain} reason.
    """
    body = reason.encode("utf-8") + b"\n"
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
    request.setHeader(b"Content-Length", b"%d" % (len(body),))
    # Twisted drops a HEAD body itself, but logs a warning for each one.
    return b"" if request.method == b"HEAD" else body


def not_allowed(request: IRequest, allowed: Sequence[bytes]) -> bytes:
    """
    Answer C{405} with C{Allow}, naming the methods to use instead.
    """
    request.setHeader(b"Allow", b", ".join(allowed))
    names = [m.decode("ascii") for m in allowed]
    use = " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
    method = printable(request.method)
    hint = f"use {use}" if use else "it answers no method"
    return plain_error(request, 405, f"method {method} is not allowed here; {hint}")


def refusal(
    request: IRequest, reason: Rejection, retry_after: int = 1, *, close: bool = False
) -> bytes:
    """
    Answer C{503} with C{Retry-After} and a one-line reason: the server
    takes on no more work now; C{429} when it is this client's share that
    is full (L{Rejection.CLIENT_STREAMS}, L{Rejection.CLIENT_PENDING}), so
    that a proxy in front, which takes a 503 for the server failing and
    sends no one there for a while, passes it on as the client's alone.
    With C{close}, the connection is closed once the answer is out (the
    server is shutting down).
    """
    request.setHeader(b"Retry-After", b"%d" % (retry_after,))
    if close:
        request.setHeader(b"Connection", b"close")
        keep_alive_off(request)
    server_wide = reason in (Rejection.OVERLOADED, Rejection.SHUTTING_DOWN)
    what = f"server {reason.value}" if server_wide else reason.value
    code = 429 if reason in _CLIENTS_SHARE else 503
    return plain_error(request, code, f"{what}; retry in {retry_after} s")


_CLIENTS_SHARE = (Rejection.CLIENT_STREAMS, Rejection.CLIENT_PENDING)


def unavailable(request: IRequest, why: str, retry_after: int) -> None:
    """
    Answer C{request}, cut short by the server, C{503} with C{why},
    C{Retry-After} and C{Connection: close}; or, if its status line is out
    already, end its body where it is.
    """
    started = cast("http.Request", request)
    if started.startedWriting:
        started.finish()
        return
    request.setHeader(b"Retry-After", b"%d" % (retry_after,))
    request.setHeader(b"Connection", b"close")
    request.write(plain_error(request, 503, f"{why}; retry in {retry_after} s"))
    started.finish()
