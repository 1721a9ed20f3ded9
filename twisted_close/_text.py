"""
Text from the network made safe for one log line.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.web.iweb import IRequest

__all__ = ["describe_address", "describe_client"]


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
    return describe_address(request.getClientAddress())


def describe_address(address: object) -> str:
    """
    C{host:port}, C{[host]:port} for IPv6, C{unix:path} for a UNIX socket.
    """
    if isinstance(address, IPv6Address):
        return f"[{address.host}]:{address.port}"
    if isinstance(address, IPv4Address):
        return f"{address.host}:{address.port}"
    if isinstance(address, UNIXAddress):
        return "unix:" + _printable(address.name or b"")
    return str(address)
