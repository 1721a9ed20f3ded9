"""
L{guard_connections}: a C{Site}'s defences against what the network does
on a bad day, where nothing is sent at all:

  - a peer that vanished (no FIN, no RST) is dropped within C{peer_timeout}
    seconds, by TCP keep-alive and C{TCP_USER_TIMEOUT}, and reported as
    L{Ending.PEER_TIMED_OUT};
  - a request that trickles in is answered C{408} and closed once
    C{read_timeout} seconds have passed since its first byte;
  - one client address holds at most C{max_per_client} connections: one
    more is closed as soon as accepted (the address is the peer's when the
    connection is made, a proxy's for all of its clients: a trusted proxy's
    connections are not capped);
  - when descriptors run short (past L{ConnectionGuard.room} connections),
    connections that lose nothing by it are closed, oldest first, as nginx
    frees its connections: idle ones (HTTP/1.1 between requests, HTTP/2
    with no stream open) and those still sending a request's head or body,
    for which no answer is under way yet; with none such,
    the newcomer itself is closed once accepted (as nginx does when its
    C{worker_connections} are all busy), so that the room holds and accept
    does not fail for lack of descriptors; failed accepts are logged once a
    second with a count.
"""

from __future__ import annotations

import math
import socket
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import ILogObserver, LogEvent, Logger
from twisted.web.server import Site
from zope.interface import provider

from ._clock import default_clock
from ._connection import ConnectionWatch
from ._forwarded import TrustedProxies
from ._ledger import Ledger
from ._limits import _cap
from ._outcome import Rejection
from ._twisted.channel import (
    close_at_once,
    http11_channel,
    network_producer,
    nothing_unsent,
    receiving_request,
    reusable,
)
from ._twisted.h2 import h2_connection, h2_idle
from ._twisted.reactor import accept_failure, redirect_accept_log
from ._twisted.tcp import tcp_transport_of, watch_peer_timeout
from ._twisted.wrapping import guard_protocols

__all__ = [
    "ConnectionGuard",
    "guard_connections",
    "peer_timeout_supported",
    "set_peer_timeout",
]

log = Logger(namespace="twisted_close")

_PEER_OPTIONS = ("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT", "TCP_USER_TIMEOUT")

ACCEPT_PAUSE = 0.1
"""Seconds a port stops accepting after an accept failed and left the
client waiting (else the reactor would try again at once, in a loop)."""


BARREN = 0.05
"""Seconds without looking for connections to free after a look found none."""


def peer_timeout_supported() -> bool:
    """
    Whether this platform has the socket options L{set_peer_timeout} sets.
    """
    return all(hasattr(socket, name) for name in _PEER_OPTIONS)


def set_peer_timeout(sock: socket.socket, seconds: float) -> None:
    """
    Make the kernel drop C{sock}'s connection once its peer has not
    acknowledged anything for C{seconds}: data in flight
    (C{TCP_USER_TIMEOUT}) or, when idle, keep-alive probes (from
    C{seconds / 2} on, one a second; a peer that answers them costs one
    probe every C{seconds / 2} of quiet).

    @raise OSError: if the socket takes no such options.
    """
    idle = max(1, int(seconds // 2))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
    # Only where TCP_USER_TIMEOUT does not override it (it does on Linux).
    sock.setsockopt(
        socket.IPPROTO_TCP, socket.TCP_KEEPCNT, max(1, math.ceil(seconds) - idle)
    )
    # A quarter second short: keep-alive checks it once a second from the
    # last packet received, and a check a hair early would wait one more.
    user_timeout = max(500, int(seconds * 1000) - 250)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, user_timeout)


class _OncePerSecond:
    """
    Counts, said at most once a second: at once if the last line is a
    second old, else when its second is over.
    """

    def __init__(self, clock: IReactorTime, say: Callable[[Counter[str]], None]):
        self._clock = clock
        self._say = say
        self._held: Counter[str] = Counter()
        self._last = -math.inf
        self._later: IDelayedCall | None = None

    def add(self, kind: str, n: int = 1) -> None:
        self._held[kind] += n
        if self._later is not None:
            return
        wait = self._last + 1.0 - self._clock.seconds()
        if wait <= 0:
            self.flush()
        else:
            self._later = self._clock.callLater(wait, self.flush)

    def flush(self) -> None:
        if self._later is not None and self._later.active():
            self._later.cancel()
        self._later = None
        if self._held:
            held, self._held = self._held, Counter()
            self._last = self._clock.seconds()
            self._say(held)


class ConnectionGuard:
    """
    The connections of one C{Site} (see L{guard_connections}).

    @ivar room: how many connections may be open before idle ones are
        closed to make room for new ones; C{None}: no limit.
    @ivar max_per_client: how many connections one peer address may hold
        open; C{None}: no limit.
    @ivar trusted: peers whose connections are not capped (proxies).
    @ivar freed: connections closed so far to make room.
    @ivar refused: new connections closed as soon as accepted, the room
        being full with none to free.
    @ivar over_cap: new connections closed as soon as accepted, their
        address holding C{max_per_client} already.
    @ivar turned_away: clients turned away so far because accept failed.
    """

    def __init__(
        self,
        *,
        clock: IReactorTime,
        ledger: Ledger | None,
        peer_timeout: float | None,
        read_timeout: float | None,
        max_per_client: int | None = None,
        trusted: TrustedProxies | None = None,
    ) -> None:
        """
        @raise ValueError: if C{max_per_client} is not C{None} nor a whole
            number >= 1.
        """
        self.clock = clock
        self.ledger = ledger
        self.peer_timeout = peer_timeout if peer_timeout_supported() else None
        self.read_timeout = read_timeout
        self.room: int | None = None
        self.max_per_client = _cap("max_per_client", max_per_client)
        self.trusted = trusted or TrustedProxies(())
        self.freed = 0
        self.refused = 0
        self.over_cap = 0
        self.turned_away = 0
        # Connections open per peer host, those capped alone.
        self._per_client: Counter[str] = Counter()
        # Each connection's protocol, oldest first; the guard's state of a
        # connection is kept on its protocol (GuardedProtocol).
        self._connections: dict[Any, None] = {}
        self._closing = 0
        self._barren_until = -math.inf
        self._freed_log = _OncePerSecond(clock, self._say_freed)
        self._accept_log = _OncePerSecond(clock, self._say_turned_away)
        self._cap_log = _OncePerSecond(clock, self._say_over_cap)

    @property
    def open(self) -> int:
        """
        Connections open now (those being closed included).
        """
        return len(self._connections)

    # -- what the site's protocols tell (ConnectionHooks) -------------------

    def made(self, protocol: Any, transport: object) -> None:
        """
        C{protocol}, built by the site, is connected to C{transport}.
        """
        if self.max_per_client is not None and self._over_cap(protocol, transport):
            protocol.guard_refused = True
            protocol.guard_over_cap = True
            self._connections[protocol] = None
            return
        room = self.room
        if room is not None and len(self._connections) - self._closing >= room:
            # Before the newcomer is counted: it is not one to close.
            # With none to free, the newcomer goes, once its protocol has
            # heard of it: kept, each one past the room would hold a
            # descriptor until accept itself fails (EMFILE), however fast
            # the pending ones are answered.
            if not self.free():
                protocol.guard_refused = True
        self._connections[protocol] = None
        if self.peer_timeout is not None and not protocol.guard_refused:
            tcp = tcp_transport_of(transport)
            if tcp is not None:
                try:
                    set_peer_timeout(tcp.getHandle(), self.peer_timeout)
                except OSError:
                    pass  # a socket without TCP options: nothing to watch
                else:
                    watch_peer_timeout(tcp)

    def _over_cap(self, protocol: Any, transport: Any) -> bool:
        """
        Whether C{protocol}'s peer holds C{max_per_client} connections
        already; if not, count this one against it.
        """
        peer = transport.getPeer()
        if not isinstance(peer, (IPv4Address, IPv6Address)):
            return False  # a UNIX socket's peers have no address to tell apart
        host = peer.host
        if self.trusted and self.trusted.trusts(host):
            return False
        if self._per_client[host] >= (self.max_per_client or 0):
            protocol.guard_client = host
            return True
        self._per_client[host] += 1
        protocol.guard_client = host
        return False

    def heard(self, protocol: Any) -> None:
        """
        C{protocol} has heard its connection was made.
        """
        if not protocol.guard_refused or protocol not in self._connections:
            return
        channel = http11_channel(protocol)
        # At once: the descriptor is wanted for the next accept of this turn.
        self._close(protocol, channel or protocol, at_once=True)
        if protocol.guard_over_cap:
            self.over_cap += 1
            self._cap_log.add(protocol.guard_client)
            return
        self.refused += 1
        self._freed_log.add("refused")

    def lost(self, protocol: Any) -> None:
        """
        C{protocol} has heard its connection was lost.
        """
        if self._connections.pop(protocol, 0) is None and protocol.guard_closing:
            self._closing -= 1
        host = protocol.guard_client
        if host is not None and not protocol.guard_over_cap:
            protocol.guard_client = None
            left = self._per_client[host] - 1
            # Forget an address at zero: a flood from many leaves nothing.
            if left > 0:
                self._per_client[host] = left
            else:
                del self._per_client[host]
        if protocol.guard_read_timer is not None:
            protocol.guard_read_timer.cancel()
            protocol.guard_read_timer = None
        # Its channel and its connection's watch hold each other: let go now,
        # not at the cyclic GC's next full collection.  The deliveries do it
        # for a connection whose answers they watched; not with delivery
        # "written", nor off TCP.
        watch = network_producer(http11_channel(protocol))
        if isinstance(watch, ConnectionWatch):
            watch.lost()

    # -- read timeout -----------------------------------------------------

    def reading(self, protocol: Any, receiving: bool) -> None:
        """
        After a read, C{protocol}'s channel began to receive a request
        without a timer running, or stopped with one.
        """
        if not receiving:
            protocol.guard_read_timer.cancel()
            protocol.guard_read_timer = None
        elif not protocol.guard_closing and self.read_timeout is not None:
            protocol.guard_read_timer = self.clock.callLater(
                self.read_timeout, self._too_slow, protocol
            )

    def _too_slow(self, protocol: Any) -> None:
        protocol.guard_read_timer = None
        channel = http11_channel(protocol)
        if channel is None or protocol.guard_closing or not receiving_request(channel):
            return
        if self.ledger is not None:
            self.ledger.reject(Rejection.READ_TIMEOUT)
        body = b"request not received within %g s\n" % (self.read_timeout or 0,)
        channel.transport.write(
            b"HTTP/1.1 408 Request Timeout\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )
        self._close(protocol, channel, at_once=False)

    def _close(self, protocol: Any, channel: Any, at_once: bool) -> None:
        if not protocol.guard_closing:
            protocol.guard_closing = True
            if protocol in self._connections:
                self._closing += 1
        if at_once:
            close_at_once(channel)
        else:
            # HTTPChannel.loseConnection unregisters it as the producer first.
            channel.loseConnection()

    # -- descriptors ------------------------------------------------------

    def free(self, most: int | None = None) -> int:
        """
        Close up to C{most} connections that lose nothing by it (idle over
        HTTP/1.1 or HTTP/2, or still sending a request's head or body),
        oldest first; by default a sixteenth of those open, from 1 to 32.
        Say how many were closed.
        """
        now = self.clock.seconds()
        if now < self._barren_until:
            return 0
        if most is None:
            most = max(1, min(32, len(self._connections) // 16))
        closed = 0
        for protocol in list(self._connections):
            if closed >= most:
                break
            if protocol.guard_closing:
                continue
            channel = http11_channel(protocol)
            if channel is None:
                channel = h2_connection(protocol)
                if channel is None or not (
                    h2_idle(channel) and nothing_unsent(channel.transport)
                ):
                    continue
            elif not (channel.transport and reusable(channel)):
                continue
            # At once: the descriptor is wanted in this very turn.
            self._close(protocol, channel, at_once=True)
            closed += 1
        if closed:
            self.freed += closed
            self._freed_log.add("freed", closed)
        else:
            # Every connection is busy: do not look through them all again
            # for each of a flood of accepts.
            self._barren_until = now + BARREN
        return closed

    def _say_freed(self, held: Counter[str]) -> None:
        if held["refused"]:
            log.warn(
                "Descriptors short: closed {closed} idle connections, oldest "
                "first; {refused} new ones closed as soon as accepted, none "
                "being idle ({open} open, room for {room})",
                closed=held["freed"],
                refused=held["refused"],
                open=self.open,
                room=self.room,
            )
            return
        log.warn(
            "Descriptors short: closed {closed} idle connections, oldest first "
            "({open} open, room for {room})",
            closed=held["freed"],
            open=self.open,
            room=self.room,
        )

    def _say_over_cap(self, held: Counter[str]) -> None:
        log.warn(
            "Connections per client: closed {count} new connections as soon "
            "as accepted, their address holding {cap} already ({addresses})",
            count=sum(held.values()),
            cap=self.max_per_client,
            addresses=", ".join(f"{n} from {host}" for host, n in held.most_common(5)),
        )

    def watch_port(self, port: Any) -> None:
        """
        Log what C{port} (a listening C{tcp.Port}) says of failed accepts
        once a second with a count, instead of a line or three each; free
        room when they fail for lack of descriptors; pause accepting a
        moment when a failure leaves the client waiting.
        """
        forward = getattr(getattr(port, "_logger", None), "observer", None)

        @provider(ILogObserver)
        def observe(event: LogEvent) -> None:
            kind = accept_failure(event)
            if kind is None:
                if forward is not None:
                    forward(event)
                return
            if not kind:
                return
            self.turned_away += 1
            self._accept_log.add(kind)
            # One for one: room for the next client, not a purge.
            self.free(1)
            if "acceptError" in event:
                # Twisted left the client waiting: a listener still ready
                # to read would be tried again at once, in a busy loop.
                self._pause(port)

        redirect_accept_log(port, observe)

    def _pause(self, port: Any) -> None:
        stop = getattr(port, "stopReading", None)
        if stop is None or getattr(port, "_twisted_close_paused", False):
            return
        stop()
        port._twisted_close_paused = True

        def resume() -> None:
            port._twisted_close_paused = False
            if getattr(port, "connected", False) and not getattr(
                port, "disconnecting", False
            ):
                port.startReading()

        self.clock.callLater(ACCEPT_PAUSE, resume)

    def _say_turned_away(self, held: Counter[str]) -> None:
        log.warn(
            "Out of descriptors: {count} connections could not be accepted "
            "({errors}); {open} open",
            count=sum(held.values()),
            errors=", ".join(f"{n} {kind}" for kind, n in held.most_common()),
            open=self.open,
        )


_GUARD = "_twisted_close_guard"


def guard_connections(
    site: Site,
    *,
    peer_timeout: float | None = 30.0,
    read_timeout: float | None = 20.0,
    ledger: Ledger | None = None,
    clock: IReactorTime | None = None,
    max_per_client: int | None = None,
    trusted: TrustedProxies | Iterable[str] = (),
) -> ConnectionGuard:
    """
    Guard every connection C{site} accepts from now on (HTTP/1.1, and
    HTTP/2 over TLS) against peers that vanish and requests that trickle.

    @param peer_timeout: seconds after which a peer that stopped
        acknowledging is dropped, with or without data in flight (TCP
        keep-alive and C{TCP_USER_TIMEOUT}; nothing where the platform lacks
        them, see L{peer_timeout_supported}); C{None}: the kernel's defaults
        (about 15 minutes with data in flight, hours without).
    @param read_timeout: seconds a request's head and body have, from its
        first byte, to arrive over HTTP/1.1; else C{408} and the connection
        is closed; C{None}: no limit.
    @param ledger: counts those C{408}s as rejected
        (L{Rejection.READ_TIMEOUT}).
    @param clock: the site's reactor by default.
    @param max_per_client: how many connections one peer address may hold
        open; one more is closed as soon as accepted, counted
        (L{ConnectionGuard.over_cap}) and logged once a second.  The
        address is the peer's as the connection is made: behind a proxy,
        the proxy's, whatever client it names later.  C{None}: no limit.
    @param trusted: the proxies (addresses, networks: see
        L{TrustedProxies}) whose connections are not capped: they carry
        many clients.
    @return: the guard, whose L{ConnectionGuard.room} turns on freeing idle
        connections when descriptors run short.
    @raise ValueError: if C{site} has a guard already, or a value is bad.
    """
    if guard_of(site) is not None:
        raise ValueError("guard_connections: this site is guarded already")
    clock = default_clock(clock if clock is not None else site.reactor)
    if not isinstance(trusted, TrustedProxies):
        trusted = TrustedProxies(trusted)
    guard = ConnectionGuard(
        clock=clock,
        ledger=ledger,
        peer_timeout=peer_timeout,
        read_timeout=read_timeout,
        max_per_client=max_per_client,
        trusted=trusted,
    )
    guard_protocols(site, guard)
    setattr(site, _GUARD, guard)
    return guard


def guard_of(site: Site) -> ConnectionGuard | None:
    """
    The guard L{guard_connections} gave C{site}, if any.
    """
    guard = getattr(site, _GUARD, None)
    return guard if isinstance(guard, ConnectionGuard) else None
