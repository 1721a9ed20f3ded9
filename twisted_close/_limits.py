"""
L{Limits}: what all streams together, and one client, may hold at once.

A client is the connection's peer address (its host, without the port):
every HTTP/2 stream of one connection, and every connection from one
address, count as that one client.  Behind a proxy that is the proxy, so
a proxy in front turns the per-client caps off and enforces its own.
"""

from __future__ import annotations

from collections import Counter

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.web.iweb import IRequest

from ._outcome import Rejection

__all__ = ["Limits", "client_key"]


def client_key(request: IRequest) -> str:
    """
    Who C{request} counts against: its peer's host (C{unix} for a UNIX
    socket, whose peers have no address to tell them apart).
    """
    address = request.getClientAddress()
    if isinstance(address, (IPv4Address, IPv6Address)):
        return address.host
    if isinstance(address, UNIXAddress):
        return "unix"
    return str(address)


def _cap(name: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a whole number >= 1 or None, not {value!r}")
    return value


class Limits:
    """
    Caps on streams (endless answers: event streams, outcome streams) and
    on one client's share, with the counts they are checked against.

    Streams are not pending work: they have their own pool, C{max_streams}
    in all and C{max_streams_per_client} from one client, so that open
    streams never turn ordinary requests away.  C{max_pending_per_client}
    caps one client's pending answers (the ledger's C{max_pending} caps
    them all).  C{None} turns a cap off.

    The resources and the ledger that share a L{Limits} keep its counts:
    L{admit_stream} / L{admit_pending} are asked before a request is taken
    on, L{stream_began} / L{pending_began} when it is, and the matching
    C{..._ended} when it ends.

    @ivar max_streams: the most streams open at once, or C{None}.
    @ivar max_streams_per_client: the most streams one client holds open.
    @ivar max_pending_per_client: the most pending answers one client waits
        for at once.
    """

    def __init__(
        self,
        *,
        max_streams: int | None = None,
        max_streams_per_client: int | None = None,
        max_pending_per_client: int | None = None,
    ) -> None:
        """
        @raise ValueError: if a cap is not C{None} nor a whole number >= 1.
        """
        self.max_streams = _cap("max_streams", max_streams)
        self.max_streams_per_client = _cap(
            "max_streams_per_client", max_streams_per_client
        )
        self.max_pending_per_client = _cap(
            "max_pending_per_client", max_pending_per_client
        )
        self._streams: Counter[str] = Counter()
        self._stream_total = 0
        self._pending: Counter[str] = Counter()

    @property
    def streams(self) -> int:
        """
        How many streams are open now.
        """
        return self._stream_total

    def streams_of(self, client: str) -> int:
        """
        How many streams C{client} holds open now.
        """
        return self._streams[client]

    def pending_of(self, client: str) -> int:
        """
        How many pending answers C{client} waits for now.
        """
        return self._pending[client]

    def admit_stream(self, client: str) -> Rejection | None:
        """
        Whether C{client} may open one more stream: C{None}, or why not.
        """
        if self.max_streams is not None and self._stream_total >= self.max_streams:
            return Rejection.TOO_MANY_STREAMS
        cap = self.max_streams_per_client
        if cap is not None and self._streams[client] >= cap:
            return Rejection.CLIENT_STREAMS
        return None

    def admit_pending(self, client: str) -> Rejection | None:
        """
        Whether C{client} may wait for one more answer: C{None}, or why not.
        """
        cap = self.max_pending_per_client
        if cap is not None and self._pending[client] >= cap:
            return Rejection.CLIENT_PENDING
        return None

    def stream_began(self, client: str) -> None:
        """
        Count a stream C{client} opened.
        """
        self._streams[client] += 1
        self._stream_total += 1

    def stream_ended(self, client: str) -> None:
        """
        Count off a stream of C{client}'s that ended.
        """
        self._stream_total -= 1
        _count_off(self._streams, client)

    def pending_began(self, client: str) -> None:
        """
        Count a pending answer C{client} waits for.
        """
        self._pending[client] += 1

    def pending_ended(self, client: str) -> None:
        """
        Count off a pending answer of C{client}'s that ended.
        """
        _count_off(self._pending, client)


def _count_off(counts: Counter[str], client: str) -> None:
    # Forget a client at zero: a flood from many addresses leaves nothing.
    left = counts[client] - 1
    if left > 0:
        counts[client] = left
    else:
        del counts[client]
