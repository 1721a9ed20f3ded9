"""
The C{closedemo} twistd plugin: its L{Options} and L{makeService}.
"""

from __future__ import annotations

from typing import Any

from twisted.application import strports
from twisted.application.service import IService, MultiService
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IStreamServerEndpoint,
)
from twisted.internet.testing import MemoryReactor
from twisted.logger import Logger
from twisted.python import usage
from zope.interface import implementer

from .._connections import ConnectionGuard, guard_of
from .._delay import DelayError, parse_delay
from .._drain import GracefulDrain
from .._ledger import Ledger
from .._text import describe_address
from .descriptors import DescriptorRoom
from .signals import QuietRepeatedStops
from .site import build_site, optional_metrics
from .workers import WorkerPool, tcp_only

__all__ = ["DEFAULT_LISTEN", "Options", "makeService"]

DEFAULT_LISTEN = "tcp:1337:interface=127.0.0.1"

log = Logger(namespace="twisted_close")


class Options(usage.Options):
    """
    Options of C{twistd closedemo}.
    """

    synopsis = "[options]"
    longdesc = (
        "Answer every path after a delay; report and cancel the answer when "
        "the client goes away first.  /stats shows the counters."
    )
    optParameters = [
        ["delay", "d", "10", "Seconds before the answer (decimal, e.g. 0.5)."],
        ["max-delay", None, "60", "The largest ?delay=S a request may ask for."],
        ["message", "m", "hello", "The answer's body (UTF-8 text or HTML)."],
        ["tick", None, "1", "Seconds between /events events."],
        ["heartbeat", None, "15", "Seconds between /events heartbeats (0: none)."],
        ["shutdown-grace", None, "5", "Seconds pending answers get at a stop."],
        ["max-pending", None, "10000", "Requests pending at once; more get 503."],
        ["idle-timeout", None, "75", "Seconds an idle connection is kept open."],
        ["workers", None, "1", "Processes serving the same sockets (tcp only)."],
        [
            "access-log",
            None,
            None,
            "Log a line per request: '-' (server log) or a file.",
        ],
        ["peer-timeout", None, "30", "Seconds to drop a silent peer after (0: off)."],
        ["read-timeout", None, "20", "Seconds a request has to arrive (0: no limit)."],
    ]
    compData = usage.Completions(optActions={"listen": usage.CompleteNetInterfaces()})

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self["listen"] = []

    def opt_listen(self, description: str) -> None:
        """Strports endpoint to listen on; repeatable. [default: tcp:1337:interface=127.0.0.1]"""  # noqa: E501
        _check_endpoint(description)
        self["listen"].append(description)

    def postOptions(self) -> None:
        self["max-delay"] = _seconds("--max-delay", self["max-delay"], DAY)
        self["delay"] = _seconds(
            "--delay", self["delay"], self["max-delay"], "--max-delay"
        )
        self["tick"] = _seconds("--tick", self["tick"], HOUR)
        if self["tick"] == 0:
            raise usage.UsageError("--tick: 0 s between events is no stream")
        # 0 turns the heartbeat off; a vanished peer is then found only by
        # the next event's failing write.
        self["heartbeat"] = _seconds("--heartbeat", self["heartbeat"], HOUR) or None
        self["shutdown-grace"] = _seconds(
            "--shutdown-grace", self["shutdown-grace"], HOUR
        )
        self["idle-timeout"] = _seconds("--idle-timeout", self["idle-timeout"], DAY)
        if self["idle-timeout"] == 0:
            raise usage.UsageError("--idle-timeout: give seconds > 0")
        self["max-pending"] = _count("--max-pending", self["max-pending"], 10**7)
        self["workers"] = _count("--workers", self["workers"], 64)
        # 0 leaves vanished peers to the kernel's defaults (minutes to hours).
        self["peer-timeout"] = _seconds("--peer-timeout", self["peer-timeout"], HOUR)
        if 0 < self["peer-timeout"] < 1:
            raise usage.UsageError("--peer-timeout: give 0 (off) or at least 1 s")
        self["peer-timeout"] = self["peer-timeout"] or None
        self["read-timeout"] = (
            _seconds("--read-timeout", self["read-timeout"], DAY) or None
        )
        if self["workers"] > 1:
            for description in self["listen"] or [DEFAULT_LISTEN]:
                if not tcp_only(serverFromString(MemoryReactor(), description)):
                    raise usage.UsageError(
                        f"--listen {description!r}: --workers shares plain tcp: "
                        "sockets only"
                    )
        if not self["listen"]:
            self["listen"] = [DEFAULT_LISTEN]


HOUR = 3600.0
DAY = 86400.0


def _seconds(
    option: str, text: str, maximum: float, bound_by: str | None = None
) -> float:
    try:
        return parse_delay(text, maximum, what=option.removeprefix("--"))
    except DelayError as e:
        over = bound_by is not None and "maximum" in str(e)
        hint = f" ({bound_by} is {maximum:g})" if over else ""
        raise usage.UsageError(f"{option}: {e}{hint}") from None


def _count(option: str, text: str, maximum: int) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= maximum:
        raise usage.UsageError(
            f"{option}: {text!r} is not a whole number from 1 to {maximum}"
        )
    return int(text)


def _check_endpoint(description: str) -> None:
    # Parsing against a memory reactor checks the syntax (and loads TLS
    # certificate files) without listening on anything.
    try:
        serverFromString(MemoryReactor(), description)
    except Exception as e:
        raise usage.UsageError(f"--listen {description!r}: {e}") from None


@implementer(IStreamServerEndpoint)
class _AnnouncedEndpoint:
    """
    An endpoint that logs the address it listens on once it does.
    """

    def __init__(
        self,
        endpoint: IStreamServerEndpoint,
        description: str,
        guard: ConnectionGuard | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._description = description
        self._guard = guard

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        def announce(port: IListeningPort) -> IListeningPort:
            log.info(
                "closedemo listening on {address} ({description})",
                address=describe_address(port.getHost()),
                description=self._description,
            )
            if self._guard is not None:
                self._guard.watch_port(port)
            return port

        return self._endpoint.listen(factory).addCallback(announce)


def site_settings(options: Any) -> dict[str, Any]:
    """
    What L{build_site} takes from the options, as JSON-ready keywords.
    """
    names = ["message", "delay", "max-delay", "tick", "heartbeat", "idle-timeout"]
    names += ["peer-timeout", "read-timeout"]
    return {n.replace("-", "_"): options[n] for n in [*names, "access-log"]}


def makeService(options: Any) -> IService:
    """
    Build the closedemo service: one listener per C{--listen}, one site;
    or, with C{--workers N}, the sockets and N worker processes.
    """
    from twisted.internet import reactor

    if options["workers"] > 1:
        endpoints = [(d, serverFromString(reactor, d)) for d in options["listen"]]
        settings = {
            "site": site_settings(options),
            "max_pending": options["max-pending"],
            "shutdown_grace": options["shutdown-grace"],
        }
        pool = MultiService()
        # Lifts the limit before the workers start: they inherit it.
        pool.addService(
            DescriptorRoom(None, options["max-pending"], options["peer-timeout"])
        )
        pool.addService(WorkerPool(reactor, endpoints, options["workers"], settings))
        return pool

    ledger = Ledger(reactor, max_pending=options["max-pending"])
    site = build_site(
        clock=reactor,
        ledger=ledger,
        metrics=optional_metrics(ledger),
        **site_settings(options),
    )
    service = MultiService()
    # Services stop in reverse order: the listeners stop accepting first,
    # then the drain answers what is pending.
    service.addService(GracefulDrain(ledger, reactor, options["shutdown-grace"]))
    guard = guard_of(site)
    service.addService(
        DescriptorRoom(guard, options["max-pending"], options["peer-timeout"])
    )
    for description in options["listen"]:
        # strports: a port that cannot be had stops twistd at once.
        listener = strports.service(description, site, reactor=reactor)
        listener.endpoint = _AnnouncedEndpoint(listener.endpoint, description, guard)
        listener.setServiceParent(service)
    # Stops first: a second signal during the drain is only logged.
    QuietRepeatedStops(reactor).setServiceParent(service)  # type: ignore[no-untyped-call]
    return service
