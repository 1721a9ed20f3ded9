"""
The C{closedemo} twistd plugin: its L{Options} and L{makeService}.
"""

from __future__ import annotations

from typing import Any

from twisted.application.internet import StreamServerEndpointService
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

from ._delay import DelayError, parse_delay
from ._ledger import Ledger
from .demo import build_site

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
        self["max-delay"] = _seconds("--max-delay", self["max-delay"], None)
        self["delay"] = _seconds("--delay", self["delay"], self["max-delay"])
        self["tick"] = _seconds("--tick", self["tick"], None)
        if self["tick"] == 0:
            raise usage.UsageError("--tick: 0 s between events is no stream")
        # 0 turns the heartbeat off; a vanished peer is then found only by
        # the next event's failing write.
        self["heartbeat"] = _seconds("--heartbeat", self["heartbeat"], None) or None
        if not self["listen"]:
            self["listen"] = [DEFAULT_LISTEN]


def _seconds(option: str, text: str, maximum: float | None) -> float:
    try:
        return parse_delay(text, maximum)
    except DelayError as e:
        hint = f" (--max-delay is {maximum:g})" if "maximum" in str(e) else ""
        raise usage.UsageError(f"{option}: {e}{hint}") from None


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

    def __init__(self, endpoint: IStreamServerEndpoint, description: str) -> None:
        self._endpoint = endpoint
        self._description = description

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        def announce(port: IListeningPort) -> IListeningPort:
            log.info(
                "closedemo listening on {address} ({description})",
                address=_address(port),
                description=self._description,
            )
            return port

        return self._endpoint.listen(factory).addCallback(announce)


def _address(port: IListeningPort) -> str:
    host = port.getHost()
    h, p = getattr(host, "host", None), getattr(host, "port", None)
    if h is None or p is None:
        return str(host)
    return f"[{h}]:{p}" if ":" in h else f"{h}:{p}"


def makeService(options: Any) -> IService:
    """
    Build the closedemo service: one listener per C{--listen}, one site.
    """
    from twisted.internet import reactor

    ledger = Ledger()
    site = build_site(
        clock=reactor,
        ledger=ledger,
        message=options["message"],
        delay=options["delay"],
        max_delay=options["max-delay"],
        tick=options["tick"],
        heartbeat=options["heartbeat"],
    )
    service = MultiService()
    for description in options["listen"]:
        endpoint = serverFromString(reactor, description)
        listener = StreamServerEndpointService(
            _AnnouncedEndpoint(endpoint, description), site
        )
        # Like strports.service: a port that cannot be had stops twistd.
        listener._raiseSynchronously = True
        listener.setServiceParent(service)
    return service
