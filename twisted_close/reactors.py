"""
What Twisted's reactor and endpoints know but do not say publicly: the
address a TCP server endpoint would listen on, and the asyncio loop under
the asyncio reactor.
"""

from ._twisted.reactor import asyncio_event_loop, tcp_endpoint_address

__all__ = ["asyncio_event_loop", "tcp_endpoint_address"]
