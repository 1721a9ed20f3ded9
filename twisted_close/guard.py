"""
The connection guard's finer parts (L{twisted_close.guard_connections} is
the way in): finding a site's guard, and whether this system can bound a
peer that stopped responding.
"""

from ._guard import guard_of, peer_timeout_supported, set_peer_timeout

__all__ = ["guard_of", "peer_timeout_supported", "set_peer_timeout"]
