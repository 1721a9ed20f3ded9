"""
The choices a server makes about its clients' connections: plain values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["DEFAULT_POLICY", "ConnectionPolicy", "Delivery", "HalfClose"]

HalfClose = Literal["leave", "answer"]
"""
What a client's half-close (a FIN while its request is in hand) means:
C{"leave"}, the client left (as Node and nginx take it); C{"answer"}, the
client only stopped sending and gets its answer (RFC 9112 section 9.6).
"""

Delivery = Literal["acknowledged", "written"]
"""When an answer counts as completed (see L{ConnectionPolicy.delivery})."""


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
    @ivar delivery: when an answer counts as completed: C{"acknowledged"},
        once the client's TCP acknowledged its last byte (where that can be
        known, see L{twisted_close.Outcome.delivery}); C{"written"}, once it
        was handed to Twisted.
    """

    half_close: HalfClose = "leave"
    stall_timeout: float = 30.0
    delivery: Delivery = "acknowledged"

    def __post_init__(self) -> None:
        if self.half_close not in ("leave", "answer"):
            raise ValueError(
                f"half_close must be 'leave' or 'answer', not {self.half_close!r}"
            )
        if self.delivery not in ("acknowledged", "written"):
            raise ValueError(
                f"delivery must be 'acknowledged' or 'written', not {self.delivery!r}"
            )
        if not self.stall_timeout > 0:
            raise ValueError(f"stall_timeout must be > 0, not {self.stall_timeout!r}")


DEFAULT_POLICY = ConnectionPolicy()
"""The policy of a watch not given one: a half-close is leaving; 30 s."""
