"""
The closedemo site: the delayed answer for any path, C{/favicon.ico} 404 at
once, C{/stats} from the live ledger, C{/events}, an event stream, and
C{/demo}, a live page fed by C{/outcomes}.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.pages import notFound
from twisted.web.resource import IResource, Resource
from twisted.web.server import Site

from .. import (
    ConnectionPolicy,
    DelayedResource,
    Delivery,
    EventStreamResource,
    ForwardedFor,
    HalfClose,
    HostCheck,
    Ledger,
    bound_request_bodies,
    guard_connections,
)
from ..ledger import CountsSource, Totals
from ..logs import AccessLog, access_log_line
from ..web import not_allowed, plain_error
from .outcomes import OutcomeStreamResource
from .page import DemoPage
from .shared import SharedCounters

__all__ = ["DemoRoot", "StatsResource", "build_site", "optional_metrics"]

log = Logger(namespace="twisted_close")


class StatsResource(Resource):
    """
    C{GET /stats}: the counters as JSON, from a ledger or, with several
    workers, from their shared counters (then with a C{workers} list).
    """

    isLeaf = True

    def __init__(self, source: CountsSource) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.source = source

    def render(self, request: IRequest) -> bytes:
        if request.method not in (b"GET", b"HEAD"):
            return not_allowed(request, (b"GET", b"HEAD"))
        totals = self.source.totals()
        stats: dict[str, object] = dict(totals.snapshot())
        stats["cut_short_by_phase"] = totals.by_phase()
        if isinstance(self.source, SharedCounters):
            stats["workers"] = [
                {"worker": s.get("worker"), "pid": s.get("pid"), **snapshot}
                for s in self.source.states()
                if s is not None and (snapshot := Totals.of([s]).snapshot())
            ]
        body = json.dumps(stats).encode("ascii") + b"\n"
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"Content-Length", b"%d" % (len(body),))
        return b"" if request.method == b"HEAD" else body


METRICS_HINT = (
    "install prometheus-client (pip install '.[metrics]' in a clone of twisted-close)"
)
"""How to turn /metrics on, as the README says: the package is on no index."""


def optional_metrics(source: CountsSource) -> IResource | None:
    """
    C{/metrics} for C{source} if prometheus-client is installed; else
    C{None}, and a log line that says how to turn it on.
    """
    try:
        from ..metrics import metrics_registry, metrics_resource
    except ImportError:
        log.info("No /metrics: {hint} to serve Prometheus metrics", hint=METRICS_HINT)
        return None
    return metrics_resource(metrics_registry(source))


class _NoMetrics(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]

    def render(self, request: IRequest) -> bytes:
        return plain_error(
            request,
            404,
            f"metrics are off: {METRICS_HINT} and restart",
        )


class _QuietSite(Site):
    def log(self, request: IRequest) -> None:  # type: ignore[override]
        pass


_DOTS = frozenset((b".", b".."))


class _BadPath(Resource):
    isLeaf = True

    def render(self, request: IRequest) -> bytes:
        return plain_error(request, 400, "a path with . or .. segments")


_BAD_PATH = _BadPath()  # type: ignore[no-untyped-call]


class DemoRoot(Resource):
    """
    Every path not claimed by a child gets the delayed answer, C{/} included.
    """

    def __init__(
        self,
        delayed: DelayedResource,
        events: EventStreamResource,
        metrics: IResource | None = None,
        counts: CountsSource | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.delayed = delayed
        self.events = events
        self.putChild(b"favicon.ico", notFound())
        self.putChild(b"stats", StatsResource(counts or delayed.ledger))
        self.putChild(b"events", events)
        self.putChild(b"metrics", metrics or _NoMetrics())
        # The page and its stream read the ledger; neither is counted in it.
        self.putChild(b"demo", DemoPage(delayed.delay, delayed.max_delay))
        self.outcomes = OutcomeStreamResource(
            delayed.ledger,
            counts=counts,
            clock=delayed.clock,
            heartbeat=events.heartbeat,
            max_unsent=events.max_unsent,
        )
        self.putChild(b"outcomes", self.outcomes)

    def getChildWithDefault(self, path: bytes, request: IRequest) -> IResource:
        # A dot segment (/events/.., /outcomes/%2e%2e: twisted.web unquotes
        # them) would be routed by its first segment here, where a proxy
        # that normalises the path (nginx) applies the limits of another
        # location: refused, so no spelling routes around a proxy's limit.
        postpath: list[bytes] = getattr(request, "postpath", [])
        # isdisjoint, not any() over a generator: this runs for every request.
        if path in _DOTS or not _DOTS.isdisjoint(postpath):
            return _BAD_PATH
        # One lookup: this runs for every request.
        child: IResource = self.children.get(path, self.delayed)
        return child

    def render(self, request: IRequest) -> bytes | int:
        return self.delayed.render(request)


def build_site(
    *,
    clock: IReactorTime,
    ledger: Ledger | None = None,
    message: bytes | str = b"hello",
    delay: float = 10.0,
    max_delay: float = 60.0,
    tick: float = 1.0,
    heartbeat: float | None = 15.0,
    idle_timeout: float | None = 75.0,
    metrics: IResource | None = None,
    counts: CountsSource | None = None,
    access_log: str | None = None,
    half_close: HalfClose = "leave",
    stall_timeout: float = 30.0,
    delivery: Delivery = "acknowledged",
    allowed_hosts: Sequence[str] = (),
    trusted_proxies: Sequence[str] = (),
    peer_timeout: float | None = 30.0,
    read_timeout: float | None = 20.0,
    max_connections_per_client: int | None = None,
    max_body: int = 64 * 1024,
    max_subscriber_buffer: int | None = 256 * 1024,
    access_log_files: int = 5,
    access_log_size: int = 10_000_000,
) -> Site:
    """
    Build the closedemo C{Site} on C{clock}, counting into C{ledger}, whose
    L{Limits} every resource is admitted against.

    @param tick: seconds between C{/events} events.
    @param heartbeat: seconds between C{/events} heartbeat comments, or
        C{None} for none.
    @param idle_timeout: seconds an idle connection is kept open, or
        C{None} for ever.  twisted.web stops this timer while a request is
        in hand over HTTP/1.1, so it never cuts a pending answer or a
        stream short there; HTTP/2 connections time out on quiet alone.
    @param metrics: served at C{/metrics} if given (see
        L{twisted_close.metrics}); else C{/metrics} is a 404 that says how
        to turn it on.
    @param counts: what C{/stats} shows; C{ledger} by default, the shared
        counters of all workers when there are several.
    @param access_log: C{None} for no access log (the outcome records
        already say what matters, and a line per request costs a fifth of
        the throughput), C{"-"} for twisted.web's lines in the server's
        log, or a file's path; either way each field from the network is
        cut (L{twisted_close.logs.access_log_line}).
    @param access_log_files: the most files of an access log file kept,
        the one written included (see L{twisted_close.logs.AccessLog}).
    @param access_log_size: the bytes an access log file reaches before
        it is rotated.
    @param half_close: what a client's half-close means (see
        L{twisted_close.ConnectionPolicy}).
    @param stall_timeout: seconds a finished HTTP/2 answer may wait on a
        client that reads nothing.
    @param delivery: when an answer counts as completed (see
        L{twisted_close.ConnectionPolicy}).
    @param allowed_hosts: the C{Host} names answered besides this machine's
        own (see L{twisted_close.HostCheck}); C{"*"} for any.
    @param trusted_proxies: the proxies whose C{X-Forwarded-For} names the
        client (see L{twisted_close.ForwardedFor}); none by default.
    @param peer_timeout: seconds after which a peer that stopped responding
        is dropped, or C{None} for the kernel's defaults (see
        L{twisted_close.guard_connections}, which also gives the site the
        room to free descriptors when they run short).
    @param read_timeout: seconds a request has to arrive from its first
        byte, else C{408}; C{None}: no limit.
    @param max_connections_per_client: connections one peer address may
        hold open (the trusted proxies' are not capped); C{None}: no limit.
    @param max_body: the most bytes of a request body read: past them,
        C{413} (no resource of the demo takes a body; see
        L{twisted_close.bound_request_bodies}).
    @param max_subscriber_buffer: the most bytes held unsent for one
        C{/events} or C{/outcomes} subscriber before it is dropped;
        C{None}: no bound.
    """
    ledger = Ledger(clock) if ledger is None else ledger
    policy = ConnectionPolicy(
        half_close=half_close, stall_timeout=stall_timeout, delivery=delivery
    )
    delayed = DelayedResource(
        message, delay, max_delay=max_delay, clock=clock, ledger=ledger, policy=policy
    )
    events = EventStreamResource(
        tick=tick,
        heartbeat=heartbeat,
        clock=clock,
        ledger=ledger,
        policy=policy,
        max_unsent=max_subscriber_buffer,
    )
    root: IResource = HostCheck(
        DemoRoot(delayed, events, metrics, counts), allowed_hosts
    )
    if trusted_proxies:
        # Outermost: every answer, a refusal by Host too, names the client.
        root = ForwardedFor(root, trusted_proxies)
    kind = _QuietSite if access_log is None else Site
    site = kind(  # type: ignore[no-untyped-call]
        root, reactor=clock, timeout=idle_timeout, logFormatter=access_log_line
    )
    if access_log not in (None, "-"):
        # twisted.web's own file neither rotates nor bounds its lines.
        site.log = AccessLog(  # type: ignore[assignment]
            str(access_log), files=access_log_files, size=access_log_size, clock=clock
        )
    # Errors we cause are logged; the client never sees a traceback.
    site.displayTracebacks = False
    bound_request_bodies(site, max_body, ledger=ledger)
    guard_connections(
        site,
        peer_timeout=peer_timeout,
        read_timeout=read_timeout,
        ledger=ledger,
        clock=clock,
        max_per_client=max_connections_per_client,
        trusted=trusted_proxies,
    )
    return site
