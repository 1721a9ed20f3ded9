"""
Twisted's TLS layer (C{TLSMemoryBIOProtocol}): telling it apart, and keeping the
reason the TCP connection under it ended.

Each function says what Twisted behaviour it relies on; C{tests/test_twisted_tls.py}
pins each of them.
"""

from __future__ import annotations

from typing import Any

from twisted.python.failure import Failure

try:
    from twisted.protocols.tls import TLSMemoryBIOProtocol
except ImportError:  # pragma: no cover - without twisted[tls] there is no TLS
    TLSMemoryBIOProtocol = None  # type: ignore[assignment,misc]

from .tcp import _ConnectionLost

__all__ = [
    "is_tls",
    "keep_tls_tcp_reason",
    "tls_tcp_reason",
]


_TCP_REASON = "_twisted_close_tcp_reason"


def keep_tls_tcp_reason(transport: object) -> None:
    """
    If C{transport} is Twisted's TLS layer, keep the reason the TCP
    connection under it ended, for L{tls_tcp_reason}, before the layer
    above hears of it.

    Relies on C{TLSMemoryBIOProtocol.connectionLost} being what the TCP
    transport calls: it turns an EOF without C{close_notify} (a FIN) and a
    reset alike into a bare C{ConnectionLost}, so the reason TCP gave is
    only to be had there.
    """
    if not is_tls(transport):
        return
    untyped: Any = transport
    # An instance attribute: this one connection, no subclass to install.
    untyped.connectionLost = _KeepTCPReason(transport)


class _KeepTCPReason(_ConnectionLost):
    """
    See L{keep_tls_tcp_reason}.
    """

    __slots__ = ()

    def __call__(self, reason: Failure) -> None:
        setattr(self._transport, _TCP_REASON, reason)
        self._call_below(reason)


def tls_tcp_reason(transport: object) -> Failure | None:
    """
    What L{keep_tls_tcp_reason} kept, if anything.
    """
    reason: Failure | None = getattr(transport, _TCP_REASON, None)
    return reason


def is_tls(transport: object) -> bool:
    """
    Whether C{transport} is Twisted's TLS layer.
    """
    return TLSMemoryBIOProtocol is not None and isinstance(
        transport, TLSMemoryBIOProtocol
    )
