"""
Answers for requests we refuse: short, plain text, one line.
"""

from __future__ import annotations

from collections.abc import Sequence

from twisted.web.iweb import IRequest

from ._ledger import Ledger
from ._text import _printable

__all__ = ["close_after_answer", "not_allowed", "plain_error", "refused"]


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
    method = _printable(request.method)
    hint = f"use {use}" if use else "it answers no method"
    return plain_error(request, 405, f"method {method} is not allowed here; {hint}")


def close_after_answer(request: IRequest) -> None:
    """
    Close the connection once C{request}'s answer is out (HTTP/1.1; an
    HTTP/2 stream has no connection of its own).
    """
    channel = getattr(request, "channel", None)
    if channel is not None and hasattr(channel, "persistent"):
        channel.persistent = False


def refused(request: IRequest, ledger: Ledger, retry_after: int = 1) -> bytes | None:
    """
    If C{ledger} takes no more work (overloaded, shutting down), answer
    C{503} with C{Retry-After} at once and count the request as rejected;
    return the body to render, or L{None} to go on.
    """
    reason = ledger.admit()
    if reason is None:
        return None
    ledger.reject(reason)
    request.setHeader(b"Retry-After", b"%d" % (retry_after,))
    if ledger.closing:
        request.setHeader(b"Connection", b"close")
        close_after_answer(request)
    return plain_error(request, 503, f"server {reason}; retry in {retry_after} s")
