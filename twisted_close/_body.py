"""
L{bound_request_bodies}: a C{Site} reads no request body past a bound, and
spools none to disk.

twisted.web reads a request's whole body before any resource sees the
request, into memory under 100 kB and into a temporary file above: a client
can make it write gigabytes to the temporary directory for a resource that
takes no body at all.  Here the bound acts while the body arrives: a
C{Content-Length} over it is answered C{413} before the body's first byte is
read, a chunked (or HTTP/2) body once it passes the bound; the HTTP/1.1
connection is then closed, the HTTP/2 stream reset once the answer is out.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger
from twisted.web.server import Site

from ._ledger import Ledger
from ._outcome import Rejection
from ._twisted.h2 import answer_and_stop
from ._twisted.request import body_bounded, reject_body_h1

__all__ = ["DEFAULT_MAX_BODY", "bound_request_bodies", "checked_max_body", "too_large"]

log = Logger(namespace="twisted_close")

DEFAULT_MAX_BODY = 64 * 1024
"""The request body bound closedemo uses by default, in bytes."""


def checked_max_body(max_body: int) -> int:
    """
    C{max_body}, checked.

    @raise ValueError: if it is not a whole number >= 0.
    """
    if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body < 0:
        raise ValueError(f"max_body must be a whole number >= 0, not {max_body!r}")
    return max_body


def too_large(max_body: int, length: int | None) -> bytes:
    """
    The one-line reason of a C{413}.
    """
    if max_body == 0:
        return b"this server takes no request body\n"
    given = "" if length is None else f" ({length:,} bytes)"
    return f"request body over {max_body:,} bytes{given}\n".encode("ascii")


def bound_request_bodies(
    site: Site, max_body: int = DEFAULT_MAX_BODY, *, ledger: Ledger | None = None
) -> None:
    """
    Answer C{413} to every request of C{site} whose body passes
    C{max_body} bytes, as soon as it is known to (see the module), and
    count it in C{ledger} as rejected (L{Rejection.BODY_TOO_LARGE}).  No
    body is spooled to a file under 100 kB; C{0}: no request may have a
    body.  Call it before the site serves; it replaces (subclasses) the
    site's C{requestFactory}.

    @raise ValueError: if C{max_body} is not a whole number >= 0.
    """
    checked_max_body(max_body)

    def refuse(request: Any, length: int | None) -> None:
        if ledger is not None:
            ledger.reject(Rejection.BODY_TOO_LARGE)
        body = too_large(max_body, length)
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % (len(body),)),
        ]
        if answer_and_stop(getattr(request, "channel", None), 413, headers, body):
            return
        head = b"".join(b"%s: %s\r\n" % (n.title(), v) for n, v in headers)
        reject_body_h1(
            request,
            b"HTTP/1.1 413 Content Too Large\r\n%sConnection: close\r\n\r\n%s"
            % (head, body),
        )

    site.requestFactory = body_bounded(site.requestFactory, max_body, refuse)
