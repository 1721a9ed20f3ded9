"""
Linux socket facts: what the kernel's C{TCP_INFO} says of a TCP socket.
Plain C{socket} calls, no Twisted: where C{TCP_INFO} is missing (not Linux)
each answers C{None} or C{False}.
"""

from __future__ import annotations

import socket
import struct

__all__ = ["TCP_CLOSE", "TCP_CLOSE_WAIT", "tcp_state", "unanswered"]

# <netinet/tcp.h>: the first byte of struct tcp_info is the state.
TCP_CLOSE = 7
TCP_CLOSE_WAIT = 8
_TCP_INFO = getattr(socket, "TCP_INFO", None)


def tcp_state(sock: socket.socket) -> int | None:
    """
    The kernel's TCP state of C{sock} (Linux C{TCP_INFO}): C{TCP_CLOSE_WAIT}
    once the peer's FIN came, C{TCP_CLOSE} once its RST did; C{None} where
    it cannot be asked.
    """
    if _TCP_INFO is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 1)
    except OSError:
        return None
    return info[0] if info else None


def unanswered(sock: socket.socket) -> bool:
    """
    Whether C{sock} has retransmissions or keep-alive probes the peer has
    not answered (C{tcpi_retransmits}, C{tcpi_probes}).
    """
    if _TCP_INFO is None:
        return False
    try:
        # struct tcp_info begins with u8 state, ca_state, retransmits, probes.
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 8)
    except OSError:
        return False
    _state, _ca_state, retransmits, probes = struct.unpack_from("4B", info)
    return bool(retransmits or probes)
