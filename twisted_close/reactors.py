"""
What Twisted's reactor and endpoints know but do not say publicly: the
address a TCP server endpoint would listen on, the asyncio loop under
the asyncio reactor, and how to stop listening on a socket another process
shares without ending it for that process too, and how to have it take
turns with that process.
"""

from ._twisted.reactor import (
    accept_few,
    asyncio_event_loop,
    leave_socket_open,
    tcp_endpoint_address,
)

__all__ = [
    "accept_few",
    "asyncio_event_loop",
    "leave_socket_open",
    "tcp_endpoint_address",
]
