"""
The C{closedemo} twistd plugin: its L{Options} and L{makeService}.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from twisted.application import strports
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import AdoptedStreamServerEndpoint, serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IStreamServerEndpoint,
)
from twisted.internet.testing import MemoryReactor
from twisted.logger import Logger
from twisted.python import usage
from zope.interface import implementer

from .. import (
    AllowedHosts,
    ConnectionGuard,
    DelayError,
    GracefulDrain,
    Ledger,
    Limits,
    TrustedProxies,
    parse_delay,
)
from ..guard import guard_of
from ..reactors import leave_socket_open, tcp_endpoint_address
from ..web import describe_address
from .descriptors import DescriptorRoom
from .restart import Generation, inherited, socket_family, stop_services
from .signals import QuietRepeatedStops
from .site import build_site, optional_metrics
from .workers import HANDOVER, WorkerPool, tcp_only

__all__ = ["DEFAULT_LISTEN", "Options", "makeService"]

DEFAULT_LISTEN = "tcp:1337:interface=127.0.0.1"

log = Logger(namespace="twisted_close")


HOUR = 3600.0
DAY = 86400.0


class Options(usage.Options):
    """
    Options of C{twistd closedemo}.

    Each value is checked by its line in L{CHECKS}; the help text states
    its bounds.  A new option adds a line to both.
    """

    synopsis = "[options]"
    longdesc = (
        "Answer every path after a delay; report and cancel the answer when "
        "the client goes away first.  /stats shows the counters."
    )
    optParameters = [
        ["delay", "d", "10", "Seconds before the answer, 0 to --max-delay."],
        ["max-delay", None, "60", "The largest ?delay=S, up to 86400 s."],
        ["message", "m", "hello", "The answer's body (UTF-8 text or HTML)."],
        ["tick", None, "1", "Seconds between /events events, up to 3600."],
        [
            "heartbeat",
            None,
            "15",
            "Seconds between /events heartbeats, up to 3600 (0: none).",
        ],
        [
            "shutdown-grace",
            None,
            "5",
            "Seconds pending answers get at a stop, up to 3600.",
        ],
        [
            "max-pending",
            None,
            "10000",
            "Requests pending at once, 1 to 10,000,000; more get 503.",
        ],
        [
            "idle-timeout",
            None,
            "75",
            "Seconds an idle connection is kept open, up to 86400; keep it "
            "above --max-delay on TLS (HTTP/2 times out on quiet).",
        ],
        [
            "workers",
            None,
            "1",
            "Processes serving the same sockets (tcp or systemd), 1 to 64.",
        ],
        [
            "worker-timeout",
            None,
            "5",
            "Seconds a worker may go without a heartbeat before it is killed "
            "and replaced, 1 to 3600 (with --workers).",
        ],
        [
            "access-log",
            None,
            None,
            "Log a line per request: '-' (server log) or a file.",
        ],
        [
            "access-log-files",
            None,
            "5",
            "The most --access-log files kept, the one written included, 2 to 1000.",
        ],
        [
            "access-log-size",
            None,
            "10000000",
            "Bytes an --access-log file reaches before it is rotated, "
            "10,000 to 1,000,000,000,000.",
        ],
        [
            "max-streams",
            None,
            "1000",
            "Streams (/events, /outcomes) open at once, 1 to 10,000,000.",
        ],
        [
            "max-streams-per-client",
            None,
            "8",
            "Streams one client address holds open, up to 10,000,000 (0: no cap).",
        ],
        [
            "max-pending-per-client",
            None,
            None,
            "Pending requests of one client address, up to 10,000,000 (0: no "
            "cap) [default: a tenth of --max-pending].",
        ],
        [
            "max-connections-per-client",
            None,
            "64",
            "Connections one client address holds open, up to 10,000,000 "
            "(0: no cap); by the address that connects (a --trusted-proxy "
            "is not capped).",
        ],
        [
            "half-close",
            None,
            "leave",
            "A client's FIN with its request in hand: 'leave' (it left; "
            "cancel) or 'answer' (answer it, then close).",
        ],
        [
            "delivery",
            None,
            "acknowledged",
            "When an answer counts as completed: 'acknowledged' (the client's "
            "TCP acknowledged its last byte) or 'written' (handed to Twisted).",
        ],
        [
            "stall-timeout",
            None,
            "30",
            "Seconds a finished HTTP/2 answer may wait on a client that reads "
            "nothing, up to 86400.",
        ],
        [
            "peer-timeout",
            None,
            "30",
            "Seconds to drop a silent peer after, 1 to 3600 (0: off).",
        ],
        [
            "read-timeout",
            None,
            "20",
            "Seconds a request has to arrive, up to 86400 (0: no limit).",
        ],
        [
            "max-subscriber-buffer",
            None,
            "262144",
            "Bytes held unsent for one /events or /outcomes subscriber "
            "before it is dropped, 1,024 to 1,000,000,000.",
        ],
        [
            "max-body",
            None,
            "65536",
            "Bytes of a request body read before a 413, up to 1,000,000,000 "
            "(0: no body).",
        ],
    ]
    compData = usage.Completions(optActions={"listen": usage.CompleteNetInterfaces()})

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self["listen"] = []
        self["allowed-host"] = []
        self["trusted-proxy"] = []
        self.warnings: list[str] = []

    def opt_version(self) -> None:
        """Print the version and exit."""
        from .. import __version__

        print(f"closedemo (twisted-close) {__version__}")
        raise SystemExit(0)

    def opt_listen(self, description: str) -> None:
        """Strports endpoint to listen on; repeatable. [default: tcp:1337:interface=127.0.0.1]"""  # noqa: E501
        _check_endpoint(description)
        self["listen"].append(description)

    def opt_allowed_host(self, name: str) -> None:
        """Also answer requests for this Host: a name, *.name, an address, or * for any; repeatable."""  # noqa: E501
        try:
            AllowedHosts([name])
        except ValueError as e:
            raise usage.UsageError(f"--allowed-host: {e}") from None
        self["allowed-host"].append(name)

    def opt_trusted_proxy(self, address: str) -> None:
        """Believe X-Forwarded-For from this address or network (10.0.0.0/8): its last untrusted address is the client; repeatable."""  # noqa: E501
        try:
            TrustedProxies([address])
        except ValueError as e:
            raise usage.UsageError(f"--trusted-proxy: {e}") from None
        self["trusted-proxy"].append(address)

    def postOptions(self) -> None:
        for name, check in CHECKS.items():
            self[name] = check(self, f"--{name}", self[name])
        if self["workers"] > 1:
            for description in self["listen"] or [DEFAULT_LISTEN]:
                if not _shareable(description):
                    raise usage.UsageError(
                        f"--listen {description!r}: --workers shares plain tcp: "
                        "or systemd:domain=INET/INET6 sockets only"
                    )
        if not self["listen"]:
            self["listen"] = [DEFAULT_LISTEN]
        self.warnings = _warnings(self)


BOUNDS = (
    "max-pending",
    "max-pending-per-client",
    "max-connections-per-client",
    "max-streams",
    "max-streams-per-client",
    "max-delay",
    "read-timeout",
    "peer-timeout",
    "idle-timeout",
    "stall-timeout",
    "heartbeat",
    "max-body",
    "max-subscriber-buffer",
    "access-log-files",
    "access-log-size",
)
"""The options that bound what clients can make the server hold or do: the
README's limits table lists each, with the default C{--help} shows."""


Check = Callable[[Options, str, Any], Any]
"""Turns an option's text into its value, given the options checked so far
and the option's name (C{"--tick"}); raises C{usage.UsageError}."""


def _seconds(
    noun: str,
    maximum: float | None = None,
    *,
    bound_by: str | None = None,
    positive: bool = False,
    zero_is_off: bool = False,
) -> Check:
    """
    Decimal seconds from 0 to C{maximum}, or to the value of the option
    C{bound_by} (checked before); C{positive}: not 0; C{zero_is_off}: 0
    becomes C{None}.
    """

    def check(options: Options, option: str, text: Any) -> float | None:
        bound = maximum if bound_by is None else options[bound_by.lstrip("-")]
        try:
            value = parse_delay(str(text), bound, what=noun)
        except DelayError as e:
            over = bound_by is not None and "maximum" in str(e)
            hint = f" ({bound_by} is {bound:g})" if over else ""
            raise usage.UsageError(f"{option}: {e}{hint}") from None
        if value == 0 and positive:
            raise usage.UsageError(f"{option}: the {noun} must be over 0 s")
        return None if value == 0 and zero_is_off else value

    return check


def _count(maximum: int) -> Check:
    """
    A whole number from 1 to C{maximum}.
    """
    return _number(1, maximum, "a whole number")


def _size(maximum: int, least: int = 0) -> Check:
    """
    A whole number of bytes from C{least} to C{maximum}.
    """
    return _number(least, maximum, "a number of bytes")


def _number(least: int, maximum: int, what: str) -> Check:
    """
    Digits for a number from C{least} to C{maximum}, else a usage error that
    says it is not C{what} in that range.
    """

    def check(options: Options, option: str, text: Any) -> int:
        text = str(text)
        digits = text.isascii() and text.isdigit()
        if not digits or not least <= int(text) <= maximum:
            shown = text if len(text) <= 20 else text[:20] + "..."
            raise usage.UsageError(
                f"{option}: {shown!r} is not {what} from {least:,} to {maximum:,}"
            )
        return int(text)

    return check


def _log_file(options: Options, option: str, path: Any) -> str | None:
    """
    C{-}, or a file that can be written (opened at start, not now).
    """
    if path is None or path == "-":
        return None if path is None else "-"
    shown = repr(path if len(path) <= 60 else path[:60] + "...")
    target = Path(path)
    if "\0" in path:
        problem = "is not a file name (it holds a NUL)"
    elif target.is_dir():
        problem = "is a directory"
    elif not target.parent.is_dir():
        problem = f"cannot be made: there is no directory {str(target.parent)!r}"
    elif not os.access(target if target.exists() else target.parent, os.W_OK):
        problem = "cannot be written"
    else:
        return str(path)
    raise usage.UsageError(f"{option}: {shown} {problem}")


def _utf8(options: Options, option: str, text: Any) -> str:
    """
    Text that can be sent as UTF-8 (an argument in another encoding comes
    with lone surrogates standing for its bytes).
    """
    try:
        str(text).encode("utf-8")
    except UnicodeEncodeError:
        raise usage.UsageError(
            f"{option}: {ascii(text)[:60]} is not UTF-8 text"
        ) from None
    return str(text)


def _choice(*choices: str) -> Check:
    """
    One of C{choices}, as written.
    """

    def check(options: Options, option: str, text: Any) -> str:
        if text not in choices:
            shown = str(text)[:20]
            names = " or ".join(repr(c) for c in choices)
            raise usage.UsageError(f"{option}: {shown!r} is not {names}")
        return str(text)

    return check


def _peer_timeout(options: Options, option: str, text: Any) -> float | None:
    """
    Seconds, 0 for off: then vanished peers are left to the kernel's
    defaults (minutes to hours).  Under a second, keep-alive cannot probe.
    """
    check = _seconds("peer timeout", HOUR, zero_is_off=True)
    value: float | None = check(options, option, text)
    if value is not None and value < 1:
        raise usage.UsageError(f"{option}: give 0 (off) or at least 1 s")
    return value


def _off_or_count(options: Options, option: str, text: Any) -> int | None:
    """
    A whole number up to 10,000,000, or 0 for no cap.
    """
    if str(text) == "0":
        return None
    value: int = _count(10**7)(options, option, text)
    return value


def _cap(options: Options, option: str, text: Any) -> int | None:
    """
    A per-client cap: 0 turns it off (behind a proxy, every client is the
    proxy's address); not given, a tenth of C{--max-pending}.
    """
    if text is None:
        return max(1, int(options["max-pending"]) // 10)
    return _off_or_count(options, option, text)


CHECKS: dict[str, Check] = {
    # In this order: an option bounded by another comes after it.
    "message": _utf8,
    "max-delay": _seconds("maximum delay", DAY),
    "delay": _seconds("delay", bound_by="--max-delay"),
    "tick": _seconds("tick", HOUR, positive=True),
    # 0 turns the heartbeat off; a vanished peer is then found only by the
    # next event's failing write.
    "heartbeat": _seconds("heartbeat", HOUR, zero_is_off=True),
    "shutdown-grace": _seconds("grace", HOUR),
    "idle-timeout": _seconds("idle timeout", DAY, positive=True),
    "max-pending": _count(10**7),
    "workers": _count(64),
    "worker-timeout": _seconds("worker timeout", HOUR, positive=True),
    "access-log": _log_file,
    "access-log-files": _size(1000, least=2),
    "access-log-size": _size(10**12, least=10_000),
    "max-streams": _count(10**7),
    "max-streams-per-client": _cap,
    "max-pending-per-client": _cap,
    "max-connections-per-client": _off_or_count,
    "half-close": _choice("leave", "answer"),
    "delivery": _choice("acknowledged", "written"),
    "stall-timeout": _seconds("stall timeout", DAY, positive=True),
    "peer-timeout": _peer_timeout,
    "read-timeout": _seconds("read timeout", DAY, zero_is_off=True),
    "max-body": _size(10**9),
    "max-subscriber-buffer": _size(10**9, least=1024),
}
"""How each option's text is checked and turned into its value."""


def _warnings(options: Options) -> list[str]:
    """
    What the options allow but is likely wrong, to log at start.
    """
    warnings = []
    tls = [d for d in options["listen"] if d.split(":", 1)[0].lower() == "ssl"]
    idle, most = options["idle-timeout"], options["max-delay"]
    if tls and idle <= most:
        warnings.append(
            f"--idle-timeout {idle:g} is not above --max-delay {most:g}: "
            f"over HTTP/2 (offered on {tls[0]!r}) a connection quiet for "
            f"{idle:g} s is closed, pending answers and all"
        )
    return warnings


def _systemd(description: str) -> dict[str, str] | None:
    """
    The fields of a C{systemd:} endpoint description, else C{None}.
    """
    kind, _, rest = description.partition(":")
    if kind != "systemd":
        return None
    return dict(f.partition("=")[::2] for f in rest.split(":") if f)


def _shareable(description: str) -> bool:
    # A socket systemd hands over is bound already: the workers share it
    # as they share one the parent opens.
    fields = _systemd(description)
    if fields is not None:
        return fields.get("domain") in ("INET", "INET6")
    return tcp_only(serverFromString(MemoryReactor(), description))


def _check_endpoint(description: str) -> None:
    systemd = _systemd(description)
    if systemd is not None:
        _check_systemd(description, systemd)
        return
    # Parsing against a memory reactor checks the syntax (and loads TLS
    # certificate files) without listening on anything.
    kind, _, rest = description.partition(":")
    if kind in ("tcp", "tcp6", "ssl") and rest:
        fields = rest.split(":")
        named = [f[len("port=") :] for f in fields if f.startswith("port=")]
        given = named[0] if named else fields[0]
        if ("=" not in given or named) and not given.isdigit():
            raise usage.UsageError(
                f"--listen {description!r}: the port {given!r} is not a number"
            )
    try:
        endpoint = serverFromString(MemoryReactor(), description)
    except Exception as e:
        # One line, whatever the parser quoted back.
        reason = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(e))
        if "invalid literal for int()" in reason:
            # Python's message names int(), not what the user wrote wrong.
            value = reason.rpartition(": ")[2]
            reason = f"{value} is not a whole number (a port is, e.g. tcp:8080)"
        raise usage.UsageError(f"--listen {description!r}: {reason}") from None
    port = tcp_endpoint_address(endpoint)[1]
    if not 0 <= port <= 65535:
        raise usage.UsageError(
            f"--listen {description!r}: port {port} is not from 0 to 65535"
        )


def _unfit(descriptions: list[str]) -> str | None:
    # A TLS port adopted as it is would serve plain HTTP, and a UNIX port
    # removes its file when the old generation stops listening.
    for description in descriptions:
        if not _shareable(description):
            return (
                f"--listen {description!r}: a restart hands over plain tcp: or "
                "systemd:domain=INET/INET6 sockets only (stop and start it)"
            )
    return None


def _check_systemd(description: str, fields: dict[str, str]) -> None:
    if fields.get("domain") not in ("INET", "INET6", "UNIX"):
        raise usage.UsageError(
            f"--listen {description!r}: give domain=INET, INET6 or UNIX"
        )
    if ("index" in fields) == ("name" in fields):
        raise usage.UsageError(
            f"--listen {description!r}: give one of index=N or name=NAME"
        )
    if inherited() is not None:
        # A restarted generation: its predecessor hands the socket over.
        return
    try:
        serverFromString(MemoryReactor(), description)
    except (IndexError, KeyError, ValueError):
        raise usage.UsageError(
            f"--listen {description!r}: no such socket was handed over by "
            "systemd (run closedemo from a .socket unit, or under "
            "systemd-socket-activate --fdname=NAME)"
        ) from None


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
        self.port: IListeningPort | None = None

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        def announce(port: IListeningPort) -> IListeningPort:
            self.port = port
            log.info(
                "closedemo listening on {address} ({description})",
                address=describe_address(port.getHost()),
                description=self._description,
            )
            if self._guard is not None:
                self._guard.watch_port(port)
            return port

        return self._endpoint.listen(factory).addCallback(announce)


class _Closedemo(MultiService):
    """
    The single-process server: its listeners, its drain.
    """

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()  # type: ignore[no-untyped-call]
        except CannotListenError as e:
            # A port already taken, an address not on this machine: one line
            # for the user, as a usage error would be, not a traceback.
            raise SystemExit(f"closedemo: --listen: {e}") from None


def site_settings(options: Any) -> dict[str, Any]:
    """
    What L{build_site} takes from the options, as JSON-ready keywords.
    """
    names = ["message", "delay", "max-delay", "tick", "heartbeat", "idle-timeout"]
    names += ["peer-timeout", "read-timeout", "half-close", "stall-timeout"]
    names += ["delivery", "max-connections-per-client"]
    names += ["max-body", "max-subscriber-buffer"]
    names += ["access-log-files", "access-log-size"]
    settings = {n.replace("-", "_"): options[n] for n in [*names, "access-log"]}
    settings["allowed_hosts"] = list(options["allowed-host"])
    settings["trusted_proxies"] = list(options["trusted-proxy"])
    return settings


def limits_settings(options: Any) -> dict[str, Any]:
    """
    What the L{Limits} take from the options, as JSON-ready keywords.
    """
    names = ["max-pending", "max-streams", "max-streams-per-client"]
    names.append("max-pending-per-client")
    return {n.replace("-", "_"): options[n] for n in names}


def makeService(options: Any) -> IService:
    """
    Build the closedemo service: one listener per C{--listen}, one site;
    or, with C{--workers N}, the sockets and N worker processes.
    """
    from twisted.internet import reactor

    for warning in getattr(options, "warnings", []):
        # Not a "warning" field: observers take that for a Python warning.
        log.warn("closedemo: {problem}", problem=warning)
    # A restarted generation is handed its sockets (see restart); twistd's
    # own options, for its pidfile.
    handed = inherited()
    twistd = getattr(options, "parent", None)
    if options["workers"] > 1:
        # A restarted generation is handed the sockets: nothing to parse
        # (a systemd socket is no longer ours to find in the environment).
        endpoints = [
            (
                d,
                cast(IStreamServerEndpoint, None)
                if handed
                else serverFromString(reactor, d),
            )
            for d in options["listen"]
        ]
        settings = {
            "site": site_settings(options),
            "max_pending": options["max-pending"],
            "shutdown_grace": options["shutdown-grace"],
            "limits": limits_settings(options),
        }
        workers = WorkerPool(
            reactor,
            endpoints,
            options["workers"],
            settings,
            liveness=options["worker-timeout"],
            inherited=None if handed is None else handed.listen,
        )

        def hand_over() -> Deferred[None]:
            # The workers stop accepting, and settle, when told this word.
            workers.word = HANDOVER
            return succeed(None)

        workers.generation = Generation(
            reactor,
            width=options["workers"],
            ledger=None,
            handed=handed,
            listening=workers.listening,
            serving=workers.serving,
            stop_listening=hand_over,
            settle=0,
            twistd=twistd,
        )
        pool = MultiService()
        # First: it stops last, and its memory is there before the workers.
        pool.addService(workers.generation)
        # Lifts the limit before the workers start: they inherit it.
        pool.addService(
            DescriptorRoom(None, options["max-pending"], options["peer-timeout"])
        )
        pool.addService(workers)
        return pool

    ledger = Ledger(reactor, limits=Limits(**limits_settings(options)))
    announced: list[_AnnouncedEndpoint] = []
    listeners: list[IService] = []

    def stop_listening() -> Deferred[Any]:
        # The next generation accepts from the same sockets: close ours,
        # without shutting them down for it.
        for endpoint in announced:
            leave_socket_open(endpoint.port)
        return stop_services(listeners)()

    generation = Generation(
        reactor,
        width=1,
        ledger=ledger,
        handed=handed,
        listening=lambda: [cast(Any, e.port).fileno() for e in announced],
        serving=lambda: True,
        stop_listening=stop_listening,
        twistd=twistd,
        unfit=_unfit(options["listen"]),
    )
    site = build_site(
        clock=reactor,
        ledger=ledger,
        # Every generation's counters (see restart).
        metrics=optional_metrics(generation),
        counts=generation,
        **site_settings(options),
    )
    service: MultiService = _Closedemo()  # type: ignore[no-untyped-call]
    # First: it stops last, after the drain, with the last counts.
    service.addService(generation)
    # Services stop in reverse order: the listeners stop accepting first,
    # then the drain answers what is pending.
    service.addService(GracefulDrain(ledger, reactor, options["shutdown-grace"]))
    guard = guard_of(site)
    service.addService(
        DescriptorRoom(guard, options["max-pending"], options["peer-timeout"])
    )
    for n, description in enumerate(options["listen"]):
        if handed is None:
            # strports: a port that cannot be had stops twistd at once.
            listener = strports.service(description, site, reactor=reactor)
        else:
            fd = handed.listen[n]
            adopted = AdoptedStreamServerEndpoint(reactor, fd, socket_family(fd))
            listener = StreamServerEndpointService(adopted, site)
        endpoint = _AnnouncedEndpoint(listener.endpoint, description, guard)
        listener.endpoint = endpoint
        announced.append(endpoint)
        listeners.append(listener)
        listener.setServiceParent(service)
    # Stops first: a second signal during the drain is only logged.
    QuietRepeatedStops(reactor).setServiceParent(service)  # type: ignore[no-untyped-call]
    return service
