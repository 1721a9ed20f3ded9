"""
L{Limits}: every cap a request is admitted against, in one place: pending
work in all, streams in all, and what one client may hold of each; and a
graceful shutdown's refusal of new work.

A client is the request's client address (its host, without the port):
every HTTP/2 stream of one connection, and every connection from one
address, count as that one client.  Behind a proxy that is the proxy,
unless the site's root is wrapped in L{ForwardedFor}, which makes it the
client the proxy names.

The counts live in this process unless a L{LimitCounts} store is given:
several processes serving one address then hold their caps together.
"""

from __future__ import annotations

from collections import Counter
from typing import Protocol

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.web.iweb import IRequest

from ._outcome import Rejection

__all__ = ["LimitCounts", "Limits", "client_key"]


def client_key(request: IRequest) -> str:
    """
    Who C{request} counts against: its client's host, as
    C{getClientAddress()} says (C{unix} for a UNIX socket, whose peers have
    no address to tell them apart).
    """
    address = request.getClientAddress()
    if isinstance(address, (IPv4Address, IPv6Address)):
        return address.host
    if isinstance(address, UNIXAddress):
        return "unix"
    return str(address)


class LimitCounts(Protocol):
    """
    Where L{Limits} keep their counts when several processes share them
    (C{Limits(counts=...)}): each count is of streams if C{stream}, else of
    requests holding pending work.  A client's share is asked for, and
    changed, only where its cap is on; C{""} stands for no client known.
    """

    def total(self, stream: bool) -> int:
        """
        How many are held now, by every client.
        """

    def of(self, stream: bool, client: str) -> int:
        """
        How many C{client} holds now.
        """

    def add(self, stream: bool, client: str | None, step: int) -> None:
        """
        Count C{step} (1 or -1) more held, by C{client} too unless C{None}.
        """


def _cap(name: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a whole number >= 1 or None, not {value!r}")
    return value


class Limits:
    """
    Admission: the caps a new request is checked against, with the counts
    they are checked against, kept in this one place.

    Pending work and streams (endless answers: event streams, outcome
    streams) are two pools: C{max_pending} caps the requests holding
    pending work, C{max_streams} the open streams, so that open streams
    never turn ordinary requests away; C{max_pending_per_client} and
    C{max_streams_per_client} cap one client's share of each.  C{None}
    turns a cap off.  After L{close} (a graceful shutdown) every request
    is refused.

    L{admit} is asked before a request takes on work; the ledger calls
    L{began} when it does and L{ended} when it ends.

    @ivar max_pending: the most requests holding pending work at once.
    @ivar max_streams: the most streams open at once.
    @ivar max_streams_per_client: the most streams one client holds open.
    @ivar max_pending_per_client: the most pending answers one client waits
        for at once.
    """

    def __init__(
        self,
        *,
        max_pending: int | None = None,
        max_streams: int | None = None,
        max_streams_per_client: int | None = None,
        max_pending_per_client: int | None = None,
        counts: LimitCounts | None = None,
    ) -> None:
        """
        @param counts: where the counts are kept, if not in this process:
            a store shared by the processes that serve together, so that
            every cap holds for all of them (see L{LimitCounts}).  A cap is
            checked, then counted: two processes admitting at the same
            instant can each take the last place.
        @raise ValueError: if a cap is not C{None} nor a whole number (>= 0
            for C{max_pending}, which 0 makes refuse all work; >= 1 for the
            others).
        """
        if max_pending is not None and (
            isinstance(max_pending, bool)
            or not isinstance(max_pending, int)
            or max_pending < 0
        ):
            raise ValueError(
                f"max_pending must be a whole number >= 0 or None, not {max_pending!r}"
            )
        self.max_pending = max_pending
        self.max_streams = _cap("max_streams", max_streams)
        self.max_streams_per_client = _cap(
            "max_streams_per_client", max_streams_per_client
        )
        self.max_pending_per_client = _cap(
            "max_pending_per_client", max_pending_per_client
        )
        self._closing = False
        self._work = 0
        self._streams: Counter[str] = Counter()
        self._stream_total = 0
        self._pending: Counter[str] = Counter()
        self._store = counts

    @property
    def closing(self) -> bool:
        """
        Whether L{close} was called: no new work is taken on.
        """
        return self._closing

    def close(self) -> None:
        """
        Take on no new work from now on (a graceful shutdown has begun).
        """
        self._closing = True

    @property
    def pending(self) -> int:
        """
        How many requests hold pending work now (streams not counted).
        """
        if self._store is not None:
            return self._store.total(False)
        return self._work

    @property
    def streams(self) -> int:
        """
        How many streams are open now.
        """
        if self._store is not None:
            return self._store.total(True)
        return self._stream_total

    def streams_of(self, client: str) -> int:
        """
        How many streams C{client} holds open now.
        """
        if self._store is not None:
            return self._store.of(True, client)
        return self._streams[client]

    def pending_of(self, client: str) -> int:
        """
        How many pending answers C{client} waits for now.
        """
        if self._store is not None:
            return self._store.of(False, client)
        return self._pending[client]

    def admit(
        self, request: IRequest | None = None, *, stream: bool = False
    ) -> Rejection | None:
        """
        Whether a new request may take on work: C{None} if so, else the
        reason to refuse it.

        @param request: the request, so that its client's share is checked;
            without it, only the totals are.
        @param stream: whether it asks for an endless stream, checked
            against the streams' caps instead of the pending ones.
        """
        if self._closing:
            return Rejection.SHUTTING_DOWN
        if self._store is not None:
            return self._admit_shared(self._store, request, stream)
        if stream:
            if self.max_streams is not None and self._stream_total >= self.max_streams:
                return Rejection.TOO_MANY_STREAMS
            cap = self.max_streams_per_client
            if (
                cap is not None
                and self._streams[client_key(request) if request else ""] >= cap
            ):
                return Rejection.CLIENT_STREAMS
            return None
        if self.max_pending is not None and self._work >= self.max_pending:
            return Rejection.OVERLOADED
        cap = self.max_pending_per_client
        if cap is not None and request is not None:
            if self._pending[client_key(request)] >= cap:
                return Rejection.CLIENT_PENDING
        return None

    def _admit_shared(
        self, store: LimitCounts, request: IRequest | None, stream: bool
    ) -> Rejection | None:
        if stream:
            if self.max_streams is not None and store.total(True) >= self.max_streams:
                return Rejection.TOO_MANY_STREAMS
            cap = self.max_streams_per_client
            if cap is not None:
                client = client_key(request) if request else ""
                if store.of(True, client) >= cap:
                    return Rejection.CLIENT_STREAMS
            return None
        if self.max_pending is not None and store.total(False) >= self.max_pending:
            return Rejection.OVERLOADED
        cap = self.max_pending_per_client
        if cap is not None and request is not None:
            if store.of(False, client_key(request)) >= cap:
                return Rejection.CLIENT_PENDING
        return None

    def began(self, request: IRequest | None, stream: bool) -> str | None:
        """
        Count a request that took on work (a stream if C{stream}); return
        what to hand L{ended} when it ends.
        """
        if self._store is not None:
            return self._began_shared(self._store, request, stream)
        if stream:
            client = "" if request is None else client_key(request)
            self._streams[client] += 1
            self._stream_total += 1
            return _STREAM + client
        self._work += 1
        if request is None or self.max_pending_per_client is None:
            return None
        client = client_key(request)
        self._pending[client] += 1
        return client

    def _began_shared(
        self, store: LimitCounts, request: IRequest | None, stream: bool
    ) -> str | None:
        # Only the caps that are on are counted per client: the store's
        # per-client counts cost a look-up each.
        cap = self.max_streams_per_client if stream else self.max_pending_per_client
        client = None
        if cap is not None:
            client = "" if request is None else client_key(request)
        store.add(stream, client, 1)
        if stream:
            return _STREAM + ("\1" if client is None else client)
        return client

    def ended(self, counted: str | None) -> None:
        """
        Count off a request that ended, by what L{began} returned for it.
        """
        if self._store is not None:
            stream = counted is not None and counted.startswith(_STREAM)
            client = counted[1:] if stream and counted else counted
            self._store.add(stream, None if client == "\1" else client, -1)
            return
        if counted is None:
            self._work -= 1
        elif counted.startswith(_STREAM):
            self._stream_total -= 1
            _count_off(self._streams, counted[1:])
        else:
            self._work -= 1
            _count_off(self._pending, counted)


# Marks a stream's client in what began() returns: no address begins with it.
_STREAM = "\0"


def _count_off(counts: Counter[str], client: str) -> None:
    # Forget a client at zero: a flood from many addresses leaves nothing.
    left = counts[client] - 1
    if left > 0:
        counts[client] = left
    else:
        del counts[client]
