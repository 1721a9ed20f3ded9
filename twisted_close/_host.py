"""
L{HostCheck}: answer only requests whose C{Host} names this server.

A page on another site can make a browser send requests to a server on
loopback or on a private network, and read the answers, by pointing its own
name at that address (DNS rebinding): the browser then sends that name as
C{Host}.  Refusing every C{Host} that is not one of this server's names
stops it::

    site = Site(HostCheck(root, allowed=["*.example.com"]))

By default the allowed hosts are C{localhost}, C{*.localhost}, the loopback
addresses (C{127.0.0.0/8}, C{::1}), and the address the connection came in
on (so the server's own address, however it listens).  Any other gets
C{421 Misdirected Request} with a one-line reason.  The port in C{Host} is
not looked at.

A request whose target is in absolute form (C{GET http://name/path}) is
judged by the target's authority, not by its C{Host}, as RFC 9112 section
3.2.2 asks: the target wins.

An HTTP/1.1 or HTTP/2 request without C{Host} (HTTP/2: without
C{:authority}, which twisted.web turns into C{Host}), or with a malformed
or repeated one, gets C{400}, as RFC 9112 asks.  An HTTP/1.0 request
without C{Host} is answered: HTTP/1.0 has no C{Host}, and browsers always
send one, so no web page can make such a request.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource

from ._http import plain_error
from ._text import printable

__all__ = ["AllowedHosts", "HostCheck"]

_IP = ipaddress.IPv4Address | ipaddress.IPv6Address

# A reg-name or IPv4 address (letters, digits, - . _ ~ and the sub-delims a
# name may hold), or a bracketed IPv6 address; then an optional port.
_HOST = re.compile(
    rb"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9\-._~!$&'()*+,;=%]+))"
    rb"(?::(?P<port>[0-9]*))?"
)
_PATTERN = re.compile(r"\*|(\*\.)?[a-z0-9\-_~]+(\.[a-z0-9\-_~]+)*|\[?[0-9a-f:.]+\]?")


def _ip(text: str) -> _IP | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


class AllowedHosts:
    """
    Which C{Host} values a server answers: the defaults (see the module)
    and C{allowed}.

    @ivar allowed: the extra names, as given.
    """

    def __init__(self, allowed: Iterable[str] = ()) -> None:
        """
        @param allowed: more names: C{www.example.com}, C{*.example.com}
            (any name below C{example.com}, not C{example.com} itself), an
            address (C{192.0.2.7}, C{[2001:db8::7]}), or C{*} for any.
        @raise ValueError: if one is none of those.
        """
        self.allowed = list(allowed)
        self._any = False
        self._names: set[str] = set()
        self._suffixes: list[str] = [".localhost"]
        self._addresses: set[_IP] = set()
        for given in self.allowed:
            pattern = given.strip().lower() if isinstance(given, str) else ""
            # A name may end with the root's dot; "*." is no pattern.
            pattern = "" if pattern.endswith("*.") else pattern.removesuffix(".")
            if not _PATTERN.fullmatch(pattern):
                raise ValueError(
                    f"{given!r} is not a host name, *.name, an address or *"
                )
            if pattern == "*":
                self._any = True
            elif pattern.startswith("*."):
                self._suffixes.append(pattern[1:])
            elif (address := _ip(pattern.strip("[]"))) is not None:
                self._addresses.add(address)
            else:
                self._names.add(pattern)
        self._names.add("localhost")
        # Decisions by (Host, local address): a server sees few of each.
        # Per Host value: allowed or not, or the address literal it names,
        # allowed only if the request came in on that address.
        self._seen: dict[bytes, bool | _IP] = {}

    def check(self, request: IRequest) -> tuple[int, str] | None:
        """
        C{None} if C{request} may be answered; else the status code and the
        one-line reason to refuse it with.
        """
        hosts = request.requestHeaders.getRawHeaders(b"host")
        uri: bytes = getattr(request, "uri", b"")
        # Only an absolute-form target is parsed: this runs for every request.
        if not uri.startswith(b"/") and (target := _authority(uri)) is not None:
            hosts = [target]
        if not hosts:
            # IRequest lacks clientproto; every twisted.web request has it.
            if getattr(request, "clientproto", None) in (b"HTTP/1.0", b"HTTP/0.9"):
                return None
            return 400, "a Host header is required"
        if len(hosts) > 1:
            return 400, "more than one Host header"
        host = hosts[0]
        verdict = self._seen.get(host)
        if verdict is None:
            match = _HOST.fullmatch(host.strip())
            if match is None:
                return 400, f"malformed Host {printable(host[:100])}"
            if len(self._seen) >= 1024:
                self._seen.clear()
            verdict = self._seen[host] = self._verdict(match)
        if verdict is True:
            return None
        if verdict is not False:
            # Only now the local address (a getsockname() call) is needed.
            local = request.getHost()
            if isinstance(local, (IPv4Address, IPv6Address)):
                if verdict == _ip(local.host):
                    return None
        return 421, f"host {printable(host[:100])} is not served here"

    def _verdict(self, match: re.Match[bytes]) -> bool | _IP:
        """
        Whether the Host of C{match} is allowed, or, for an address that is
        neither loopback nor one of ours, that address: it is allowed if
        the request came in on it.
        """
        if self._any:
            return True
        v6 = match.group("v6")
        text = (v6 or match.group("name")).decode("ascii").lower()
        if not v6:
            text = text.removesuffix(".")
        address = _ip(text)
        if address is None:
            return text in self._names or any(map(text.endswith, self._suffixes))
        if address.is_loopback or address in self._addresses:
            return True
        return address


def _authority(uri: bytes) -> bytes | None:
    """
    The authority of an absolute-form request target, or C{None} for any
    other form (C{/path}, C{*}).
    """
    scheme, sep, rest = uri.partition(b"://")
    if not sep or scheme.lower() not in (b"http", b"https"):
        return None
    end = len(rest)
    for stop in (b"/", b"?", b"#"):
        at = rest.find(stop)
        if at != -1:
            end = min(end, at)
    return rest[:end]


class HostCheck(Resource):
    """
    Wrap C{resource} (a site's root) so that only requests whose C{Host}
    is allowed reach it (see L{AllowedHosts}); others get C{421}, or
    C{400} for a missing or malformed C{Host}, with a one-line reason.
    """

    def __init__(
        self, resource: IResource, allowed: AllowedHosts | Iterable[str] = ()
    ) -> None:
        """
        @param allowed: an L{AllowedHosts}, or the extra names for one.
        """
        super().__init__()  # type: ignore[no-untyped-call]
        self.resource = resource
        self.hosts = (
            allowed if isinstance(allowed, AllowedHosts) else AllowedHosts(allowed)
        )
        self.isLeaf = resource.isLeaf

    def getChildWithDefault(self, path: bytes, request: IRequest) -> IResource:
        if (refused := self.hosts.check(request)) is not None:
            return _Refused(*refused)
        child: IResource = self.resource.getChildWithDefault(path, request)
        return child

    def render(self, request: IRequest) -> bytes | int:
        if (refused := self.hosts.check(request)) is not None:
            return _Refused(*refused).render(request)
        result: bytes | int = self.resource.render(request)
        return result


class _Refused(Resource):
    isLeaf = True

    def __init__(self, code: int, reason: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.code = code
        self.reason = reason

    def render(self, request: IRequest) -> bytes:
        body = plain_error(request, self.code, self.reason)
        if self.code == 421:
            request.setResponseCode(421, b"Misdirected Request")
        return body
