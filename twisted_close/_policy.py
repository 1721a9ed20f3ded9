"""
The choices a server makes about its clients' connections: plain values.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["HalfClose"]

HalfClose = Literal["leave", "answer"]
"""
What a client's half-close (a FIN while its request is in hand) means:
C{"leave"}, the client left (as Node and nginx take it); C{"answer"}, the
client only stopped sending and gets its answer (RFC 9112 section 9.6).
"""
