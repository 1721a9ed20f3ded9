"""
Wrapping the protocol Twisted builds for an accepted connection, so that
the connection guard hears of it (a transport's C{connectionLost} is
wrapped in L{twisted_close._twisted.tcp}).

Each function says what Twisted behaviour it relies on;
C{tests/test_twisted_wrapping.py} pins each of them.
"""

from __future__ import annotations

from typing import Any, ClassVar
from typing import Protocol as TypingProtocol

from twisted.internet.interfaces import (
    IDelayedCall,
)
from twisted.python.failure import Failure
from twisted.web.http import (
    HTTPChannel,
    _GenericHTTPChannelProtocol,
    _genericHTTPChannelProtocolFactory,
)

from .channel import http11_channel, receiving_request

__all__ = [
    "ConnectionHooks",
    "GuardedProtocol",
    "guard_protocols",
]


class ConnectionHooks(TypingProtocol):
    """
    What L{guard_protocols} tells of each connection a C{Site} accepts.
    """

    read_timeout: float | None
    """C{None}: L{reading} is not told of the connections made meanwhile."""

    def made(self, protocol: Any, transport: object) -> None:
        """
        C{protocol} is connected to C{transport}, and not yet told.
        """

    def heard(self, protocol: Any) -> None:
        """
        C{protocol} has heard that its connection was made.
        """

    def lost(self, protocol: Any) -> None:
        """
        C{protocol} has heard that its connection was lost.
        """

    def reading(self, protocol: Any, receiving: bool) -> None:
        """
        After a read, C{protocol}'s HTTP/1.1 channel has part of a request
        (C{receiving}) and no C{guard_read_timer}, or has none and a timer.
        """


class GuardedProtocol:
    """
    What L{guard_protocols} adds to the class of the protocols a C{Site}
    builds: its C{guard_hooks} hear of each connection, and the hooks' state of
    the connection is kept on its protocol (no object more per connection,
    no closure per instance).
    """

    # Named for the guard: no name Twisted's protocols use.
    guard_hooks: ClassVar[ConnectionHooks]
    guard_read_timer: IDelayedCall | None = None
    """The hooks' timer of the request being received, if any."""
    guard_closing = False
    """Whether the hooks are closing the connection."""
    guard_refused = False
    """Whether the hooks refused the connection as it was made."""
    guard_over_cap = False
    """Whether it was refused for its address holding too many already."""
    guard_client: str | None = None
    """The peer's host, when the hooks count connections per client."""

    def makeConnection(self, transport: object) -> None:
        hooks = self.guard_hooks
        hooks.made(self, transport)
        super().makeConnection(transport)  # type: ignore[misc]
        hooks.heard(self)

    def connectionLost(self, reason: Failure) -> None:
        try:
            super().connectionLost(reason)  # type: ignore[misc]
        finally:
            self.guard_hooks.lost(self)


class _ReadTimed(GuardedProtocol):
    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)  # type: ignore[misc]
        channel = http11_channel(self)
        receiving = channel is not None and receiving_request(channel)
        if receiving is (self.guard_read_timer is None):
            self.guard_hooks.reading(self, receiving)


def guard_protocols(site: Any, hooks: ConnectionHooks) -> None:
    """
    Have C{site} build each protocol as an instance of a subclass of what it
    builds now (L{GuardedProtocol}, the class made once), which tells
    C{hooks} of its connection (see L{ConnectionHooks}): over HTTP/1.1, and
    HTTP/2 over TLS.

    Relies on C{Factory.buildProtocol} calling the factory's C{protocol()},
    on the C{Site}'s callers (a port, C{TLSMemoryBIOProtocol}) calling the
    protocol's C{makeConnection}, C{dataReceived} and C{connectionLost},
    and on what L{http11_channel} and L{receiving_request} rely on.  For
    twisted.web's own protocol factory, on its being
    C{_GenericHTTPChannelProtocol(HTTPChannel())}, built here as the
    subclass; any other protocol has its class changed once built, which
    costs CPython an instance dictionary.
    """
    make = site.protocol
    classes: dict[tuple[type, bool], type] = {}

    def guarded(base: type) -> Any:
        timed = hooks.read_timeout is not None
        cls = classes.get((base, timed))
        if cls is None:
            mixin = _ReadTimed if timed else GuardedProtocol
            namespace = {"guard_hooks": hooks, "__module__": __name__}
            cls = classes[base, timed] = type(base.__name__, (mixin, base), namespace)
        return cls

    if getattr(make, "__func__", None) is _genericHTTPChannelProtocolFactory:

        def protocol() -> Any:
            return guarded(_GenericHTTPChannelProtocol)(HTTPChannel())

    else:

        def protocol() -> Any:
            built = make()
            built.__class__ = guarded(type(built))
            return built

    site.protocol = protocol
