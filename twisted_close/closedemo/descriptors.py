"""
File descriptors at start: the soft C{RLIMIT_NOFILE} raised to the hard
limit (as Go's runtime does), how many connections that holds, and whether
C{--max-pending} fits in it.  Also says, once, if the platform cannot
watch for peers that vanish.
"""

from __future__ import annotations

import os

from twisted.application.service import Service
from twisted.logger import Logger

from .. import ConnectionGuard
from ..guard import peer_timeout_supported

try:
    import resource
except ImportError:  # not on Windows
    resource = None  # type: ignore[assignment]

__all__ = ["SPARE", "DescriptorRoom", "connection_room", "lift_descriptor_limit"]

log = Logger(namespace="twisted_close")

SPARE = 16
"""Descriptors kept free of connections: log files, the access log, the one
Twisted keeps in reserve for EMFILE, the sockets a worker is handed."""

_MOST = 1 << 20
"""The soft limit we ask for when the hard one is unlimited."""


def lift_descriptor_limit() -> tuple[int, int] | None:
    """
    Raise the soft C{RLIMIT_NOFILE} to the hard limit; return the soft limit
    before and after, or C{None} where there are no such limits.
    """
    if resource is None:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = _MOST if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):
            return soft, soft
        return soft, want
    return soft, soft


def _in_use() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 3 + SPARE  # stdio, and a guess at the rest


def connection_room() -> int | None:
    """
    How many connections fit in the descriptors left now, keeping L{SPARE};
    C{None} where there are no limits.
    """
    if resource is None:
        return None
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return None
    return max(1, soft - _in_use() - SPARE)


class DescriptorRoom(Service):
    """
    At start: lift the descriptor limit, give C{guard} (if any) the room
    for connections, and log what that means for C{max_pending}.
    """

    def __init__(
        self,
        guard: ConnectionGuard | None,
        max_pending: int,
        peer_timeout: float | None,
    ) -> None:
        self.guard = guard
        self.max_pending = max_pending
        self.peer_timeout = peer_timeout

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        if self.peer_timeout is not None and not peer_timeout_supported():
            log.warn(
                "--peer-timeout: this platform lacks TCP_USER_TIMEOUT or TCP "
                "keep-alive options; a vanished peer is found only by the "
                "kernel's own timeouts"
            )
        limits = lift_descriptor_limit()
        room = connection_room()
        if limits is None or room is None:
            return
        if self.guard is not None:
            self.guard.room = room
        before, after = limits
        log.info(
            "File descriptors: soft limit {after}{raised}; room for {room} connections",
            after=after,
            before=before,
            raised=f" (raised from {before})" if after != before else "",
            room=room,
        )
        if self.max_pending > room:
            log.warn(
                "--max-pending {max_pending} cannot be held: {room} connections "
                "fit in {limit} descriptors (raise the hard limit, ulimit -Hn)",
                max_pending=self.max_pending,
                room=room,
                limit=after,
            )
