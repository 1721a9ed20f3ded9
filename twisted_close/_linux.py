"""
Linux socket facts: what the kernel's C{TCP_INFO} says of a TCP socket.
Plain C{socket} calls, no Twisted: where C{TCP_INFO} is missing (not Linux)
each answers C{None} or C{False}.
"""

from __future__ import annotations

import socket
import struct

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "TCP_CLOSE",
    "TCP_CLOSE_WAIT",
    "acked_and_unacknowledged",
    "bytes_acked",
    "bytes_unacknowledged",
    "tcp_state",
    "unanswered",
]

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


# struct tcp_info: tcpi_bytes_acked, a u64 at byte 120 (Linux 4.1 and later).
_BYTES_ACKED = struct.Struct("=Q")
_BYTES_ACKED_AT = 120
# <asm-generic/ioctls.h>: SIOCOUTQ (TIOCOUTQ), bytes not yet acknowledged.
_SIOCOUTQ = 0x5411


def bytes_acked(sock: socket.socket) -> int | None:
    """
    How many bytes of what C{sock} sent its peer's kernel acknowledged
    (C{tcpi_bytes_acked}); C{None} where it cannot be asked (not Linux, not
    TCP, an older kernel, a closed socket).
    """
    if _TCP_INFO is None:
        return None
    size = _BYTES_ACKED_AT + _BYTES_ACKED.size
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, size)
    except OSError:
        return None
    if len(info) < size:
        return None
    acked: int = _BYTES_ACKED.unpack_from(info, _BYTES_ACKED_AT)[0]
    return acked


def bytes_unacknowledged(sock: socket.socket) -> int | None:
    """
    How many bytes handed to C{sock} its peer has not acknowledged yet,
    sent or not (C{SIOCOUTQ}); C{None} where it cannot be asked.
    """
    if _TCP_INFO is None or fcntl is None:
        return None
    try:
        answer = fcntl.ioctl(sock.fileno(), _SIOCOUTQ, b"\0\0\0\0")
    except (OSError, ValueError):
        return None
    unacknowledged: int = struct.unpack("=i", answer)[0]
    return unacknowledged


# struct tcp_info: tcpi_unacked (u32 at 24, segments in flight),
# tcpi_bytes_acked (u64 at 120) and tcpi_notsent_bytes (u32 at 144, Linux
# 4.6 and later).
_ACK_FIELDS = struct.Struct("=24xI92xQ16xI")


def acked_and_unacknowledged(sock: socket.socket) -> tuple[int, int] | None:
    """
    L{bytes_acked} and L{bytes_unacknowledged} of C{sock} at once, with one
    system call where nothing is in flight or unsent (no segment
    unacknowledged, no byte not sent: C{SIOCOUTQ} is then 0), as on a
    connection whose client answered; C{None} where it cannot be asked.
    """
    if _TCP_INFO is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _ACK_FIELDS.size)
    except OSError:
        return None
    if len(info) < _ACK_FIELDS.size:
        acked = bytes_acked(sock)
    else:
        in_flight, acked, unsent = _ACK_FIELDS.unpack_from(info)
        if not (in_flight or unsent):
            return acked, 0
    unacknowledged = bytes_unacknowledged(sock)
    if acked is None or unacknowledged is None:
        return None
    return acked, unacknowledged
