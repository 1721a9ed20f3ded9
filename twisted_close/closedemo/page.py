"""
L{DemoPage}: C{GET /demo}, one self-contained HTML page (inline CSS and
JavaScript, nothing fetched from elsewhere) to start delayed requests, abort
them, and watch the server's counters and outcomes live from C{/outcomes}.

The page is the package data file C{demo.html}; C{{{delay}}} and
C{{{max_delay}}} in it are replaced by the server's settings.
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib.resources import files

from twisted.web.iweb import IRequest
from twisted.web.resource import Resource

from ..web import not_allowed, plain_error

__all__ = ["DemoPage", "content_security_policy", "page_html"]

PAGE_FILE = "demo.html"

_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL)


def _number(value: float) -> str:
    return f"{value:g}"


def page_html(delay: float = 10.0, max_delay: float = 60.0) -> str:
    """
    The page, with the server's default and largest delay filled in.
    """
    template = files("twisted_close.closedemo").joinpath(PAGE_FILE).read_text("utf-8")
    return template.replace("{{delay}}", _number(delay)).replace(
        "{{max_delay}}", _number(max_delay)
    )


def content_security_policy(html: str) -> str:
    """
    A policy that lets the page run its own inline script and style (by
    their hashes) and talk to its own origin alone, plus C{*.localhost}:
    the page spreads a burst of requests over those names, which a browser
    resolves to this machine, to get past its six connections per host.
    """
    hashes: dict[str, list[str]] = {"script": [], "style": []}
    for kind, body in _INLINE.findall(html):
        digest = hashlib.sha256(body.encode("utf-8")).digest()
        hashes[kind].append("'sha256-" + base64.b64encode(digest).decode() + "'")
    return "; ".join(
        [
            "default-src 'none'",
            "script-src " + " ".join(hashes["script"] or ["'none'"]),
            "style-src " + " ".join(hashes["style"] or ["'none'"]),
            "connect-src 'self' http://*.localhost:*",
            "img-src 'self' data:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


class DemoPage(Resource):
    """
    C{GET} or C{HEAD} C{/demo}: the page, at once; not counted in the
    ledger (it holds no pending work).  Paths below it are C{404}, other
    methods C{405}.
    """

    isLeaf = True
    allowed = (b"GET", b"HEAD")

    def __init__(self, delay: float = 10.0, max_delay: float = 60.0) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        html = page_html(delay, max_delay)
        self.body = html.encode("utf-8")
        self.policy = content_security_policy(html).encode("ascii")

    def render(self, request: IRequest) -> bytes:
        if request.method not in self.allowed:
            return not_allowed(request, self.allowed)
        if request.postpath not in ([], [b""]):
            return plain_error(request, 404, "no such page; the demo is at /demo")
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        request.setHeader(b"Content-Length", b"%d" % (len(self.body),))
        request.setHeader(b"Cache-Control", b"no-cache")
        request.setHeader(b"Content-Security-Policy", self.policy)
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        request.setHeader(b"Referrer-Policy", b"no-referrer")
        return b"" if request.method == b"HEAD" else self.body
