"""
L{ForwardedFor}: behind a proxy, count and report each request against the
client the proxy names, not against the proxy.

A proxy (nginx's C{$proxy_add_x_forwarded_for}, HAProxy's C{option
forwardfor}) appends the address of whoever connected to it to
C{X-Forwarded-For}.  Only the proxies' own entries can be believed: what
stands to their left was written by the client.  So, for a request whose
peer is a trusted proxy, the client is found by walking the header from the
right, past every trusted address, to the first one that is not
(L{forwarded_client}); a request from any other peer keeps its peer, and
its header is ignored::

    site = Site(ForwardedFor(root, trusted=["127.0.0.1", "10.0.0.0/8"]))

From then on C{request.getClientAddress()} is that client (its port
unknown: 0), and so are the per-client caps of L{Limits}, the logs and the
outcomes, which all ask it.  A header a trusted proxy sent that names no
client (an entry that is not an IP address, an empty one) is not believed
at all: the request keeps the proxy's address.

The connection itself stays the proxy's: the guard's C{max_per_client}
counts connections by their peer, so give it the same trusted proxies,
whose connections it then leaves uncapped.  A proxy that speaks the
PROXY protocol needs none of this: Twisted's C{haproxy:} endpoint gives the
connection the client's address from the start.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource

from ._host import _IP
from ._host import _ip as _address
from ._twisted.request import set_client_address

__all__ = ["ForwardedFor", "TrustedProxies", "forwarded_client"]

_Net = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """
    The addresses whose C{X-Forwarded-For} is believed.

    @ivar given: the addresses and networks, as given.
    """

    def __init__(self, trusted: Iterable[str]) -> None:
        """
        @param trusted: addresses (C{127.0.0.1}, C{::1}) and networks
            (C{10.0.0.0/8}, C{fd00::/8}).
        @raise ValueError: if one is neither, with a one-line reason.
        """
        self.given = list(trusted)
        self._addresses: set[_IP] = set()
        self._networks: list[_Net] = []
        for text in self.given:
            if not isinstance(text, str):
                raise ValueError(f"{text!r} is not an IP address or network")
            text = text.strip()
            if "/" in text:
                try:
                    self._networks.append(ipaddress.ip_network(text, strict=False))
                except ValueError:
                    raise ValueError(
                        f"{text[:60]!r} is not an IP network (e.g. 10.0.0.0/8)"
                    ) from None
            elif (address := _address(text)) is not None:
                self._addresses.add(address)
            else:
                raise ValueError(
                    f"{text[:60]!r} is not an IP address or network (e.g. "
                    "127.0.0.1, 10.0.0.0/8)"
                )

    def __bool__(self) -> bool:
        return bool(self._addresses or self._networks)

    def trusts(self, host: str) -> bool:
        """
        Whether C{host} (an address's text) is one of the trusted.
        """
        address = _address(host)
        return address is not None and self._trusts(address)

    def _trusts(self, address: _IP) -> bool:
        if address in self._addresses:
            return True
        return any(address in network for network in self._networks)


def forwarded_client(
    peer: str, forwarded_for: Sequence[bytes] | None, trusted: TrustedProxies
) -> str | None:
    """
    The client a request from C{peer} was forwarded for: C{None} to keep
    C{peer} (not trusted, no header, or a header that names no client);
    else the last address of C{forwarded_for} (its values in order, as
    they came) that is not trusted, or the first if all are.

    @param peer: the host of the connection's peer.
    @param forwarded_for: the C{X-Forwarded-For} values, C{None} for none.
    """
    if not forwarded_for or not trusted.trusts(peer):
        return None
    entries = b",".join(forwarded_for).split(b",")
    client: _IP | None = None
    for entry in reversed(entries):
        try:
            address = _address(entry.strip().decode("ascii"))
        except UnicodeDecodeError:
            address = None
        if address is None:
            # Where the trusted chain names no address, nothing it says of
            # the client can be believed.
            return None
        client = address
        if not trusted._trusts(address):
            break
    return None if client is None else str(client)


_DONE = "_twisted_close_forwarded"


class ForwardedFor(Resource):
    """
    Wrap C{resource} (a site's root) so that a request from a trusted proxy
    has for its client the one the proxy names in C{X-Forwarded-For} (see
    L{forwarded_client}); requests from other peers pass unchanged.
    """

    def __init__(
        self, resource: IResource, trusted: TrustedProxies | Iterable[str]
    ) -> None:
        """
        @param trusted: a L{TrustedProxies}, or the addresses and networks
            for one.
        @raise ValueError: if one of C{trusted} is no address nor network.
        """
        super().__init__()  # type: ignore[no-untyped-call]
        self.resource = resource
        self.trusted = (
            trusted if isinstance(trusted, TrustedProxies) else TrustedProxies(trusted)
        )
        self.isLeaf = resource.isLeaf

    def _forward(self, request: IRequest) -> None:
        if getattr(request, _DONE, False):
            return
        setattr(request, _DONE, True)
        peer = request.getClientAddress()
        if not isinstance(peer, (IPv4Address, IPv6Address)):
            return
        client = forwarded_client(
            peer.host,
            request.requestHeaders.getRawHeaders(b"x-forwarded-for"),
            self.trusted,
        )
        if client is not None:
            kind = IPv6Address if ":" in client else IPv4Address
            # The port the client used is the proxy's to know: 0.
            set_client_address(request, kind("TCP", client, 0))

    def getChildWithDefault(self, path: bytes, request: IRequest) -> IResource:
        self._forward(request)
        child: IResource = self.resource.getChildWithDefault(path, request)
        return child

    def render(self, request: IRequest) -> bytes | int:
        self._forward(request)
        result: bytes | int = self.resource.render(request)
        return result
