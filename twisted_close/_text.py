"""
Text from the network made safe for one log line.

A request's method and path are written into log lines between other
fields: a space in them could pass for the end of the field (a path such as
C{/admin from 203.0.113.9:4444 after 0.01 s}, which HTTP/2 carries as it
is).  In a log line they are written with every space, other white space,
control character and backslash escaped (C{\\x20}, C{\\n}, C{\\\\}), so a
field is one word and an escape cannot be faked.  The L{Outcome} keeps the
text as it came (L{raw_text}), for the JSON log and the demo page.

Both are bounded: a field of more than L{FIELD_BYTES} bytes keeps its first
L{FIELD_BYTES} and says how long it was (C{/aaa...[16384-bytes]}), so that
no client makes a log line, an outcome record or an event grow with what
it sends.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.web.iweb import IRequest

__all__ = [
    "FIELD_BYTES",
    "describe_address",
    "describe_client",
    "printable",
    "raw_text",
]

FIELD_BYTES = 256
"""The most bytes of one field from the network kept in records and logs."""


def _cut(raw: bytes) -> tuple[bytes, str]:
    # The first FIELD_BYTES, and the note of the whole length (no space in
    # it: a log field stays one word).
    return raw[:FIELD_BYTES], f"...[{len(raw)}-bytes]"


def raw_text(raw: bytes) -> str:
    """
    Bytes from the network as text as they came, for JSON and pages: bytes
    that are not UTF-8 as C{\\xNN}; past L{FIELD_BYTES}, cut, with the
    whole length noted (C{...[16384-bytes]}).
    """
    if len(raw) <= FIELD_BYTES:
        return raw.decode("utf-8", "backslashreplace")
    kept, note = _cut(raw)
    return kept.decode("utf-8", "backslashreplace") + note


def _escape(c: str) -> str:
    if c == "\\":
        return "\\\\"
    if c == " ":
        return "\\x20"
    if "\udc80" <= c <= "\udcff":
        # A byte that is not UTF-8 (surrogateescape).
        return f"\\x{ord(c) - 0xDC00:02x}"
    if c.isprintable():
        return c
    return repr(c)[1:-1]


def _log_text(text: str) -> str:
    """
    C{text} as one word of a log line: spaces, white space, control
    characters and backslashes escaped.
    """
    # isprintable() is False for every white space but the ASCII space.
    if text.isprintable() and " " not in text and "\\" not in text:
        return text
    return "".join(map(_escape, text))


def printable(raw: bytes) -> str:
    """
    Bytes from the network as one word of a log line: spaces, white space,
    control characters and backslashes escaped (C{\\x20}, C{\\n}, C{\\\\});
    past L{FIELD_BYTES}, cut as L{raw_text} is.
    """
    if len(raw) <= FIELD_BYTES:
        return _log_text(raw.decode("utf-8", "surrogateescape"))
    kept, note = _cut(raw)
    return _log_text(kept.decode("utf-8", "surrogateescape")) + note


def describe_client(request: IRequest) -> str:
    """
    C{host:port} of the request's peer, C{[host]:port} for IPv6.
    """
    return describe_address(request.getClientAddress())


def describe_address(address: object) -> str:
    """
    C{host:port}, C{[host]:port} for IPv6, C{unix:path} for a UNIX socket;
    the host alone (C{[host]} for IPv6) for port 0, a client whose port is
    unknown (one a proxy named, see L{twisted_close.ForwardedFor}).
    """
    if isinstance(address, IPv6Address):
        return (
            f"[{address.host}]:{address.port}" if address.port else f"[{address.host}]"
        )
    if isinstance(address, IPv4Address):
        return f"{address.host}:{address.port}" if address.port else address.host
    if isinstance(address, UNIXAddress):
        return "unix:" + printable(address.name or b"")
    return str(address)
