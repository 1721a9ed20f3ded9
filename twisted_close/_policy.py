"""
The choices a server makes about its clients' connections: plain values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["DEFAULT_POLICY", "ConnectionPolicy", "HalfClose"]

HalfClose = Literal["leave", "answer"]
"""
What a client's half-close (a FIN while its request is in hand) means:
C{"leave"}, the client left (as Node and nginx take it); C{"answer"}, the
client only stopped sending and gets its answer (RFC 9112 section 9.6).
"""


@dataclass(frozen=True, slots=True)
class ConnectionPolicy:
    """
    What the server makes of a client's connection while a request is in
    hand, handed to the connection layer by each watch.

    @ivar half_close: what a client's half-close (a FIN while its HTTP/1.x
        request is in hand) means: C{"leave"}, it left: its work is
        cancelled (as Node and nginx do); C{"answer"}, it only stopped
        sending: it is answered, then the connection is closed (RFC 9112
        section 9.6), and the outcome says C{client half-closed}.
    @ivar stall_timeout: seconds a finished HTTP/2 answer may wait on a
        client that lets nothing more through (flow control, a full
        socket) before its stream is reset and the request reported as
        C{client stopped reading}.
    """

    half_close: HalfClose = "leave"
    stall_timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.half_close not in ("leave", "answer"):
            raise ValueError(
                f"half_close must be 'leave' or 'answer', not {self.half_close!r}"
            )
        if not self.stall_timeout > 0:
            raise ValueError(f"stall_timeout must be > 0, not {self.stall_timeout!r}")


DEFAULT_POLICY = ConnectionPolicy()
"""The policy of a watch not given one: a half-close is leaving; 30 s."""
