"""
The reactor and its listening ports: an endpoint's address, the asyncio loop
under the asyncio reactor, shutdown's order, and failed accepts' log lines.

Each function says what Twisted behaviour it relies on; C{tests/test_twisted_reactor.py}
pins each of them.
"""

from __future__ import annotations

import sys
from asyncio import AbstractEventLoop
from typing import Any

from twisted.internet.interfaces import (
    IReactorCore,
)
from twisted.logger import ILogObserver, LogEvent, Logger

__all__ = [
    "accept_failure",
    "accept_few",
    "asyncio_event_loop",
    "leave_socket_open",
    "reactor_cutting_connections",
    "redirect_accept_log",
    "tcp_endpoint_address",
]


def tcp_endpoint_address(endpoint: object) -> tuple[str, int, int]:
    """
    The interface, port and backlog a C{TCP4ServerEndpoint} or
    C{TCP6ServerEndpoint} would listen with.

    Relies on their C{_interface}, C{_port} and C{_backlog} attributes: the
    endpoints have no public accessors, and the workers must bind that
    address themselves to share it.
    """
    return (
        str(getattr(endpoint, "_interface", "")),
        int(getattr(endpoint, "_port", 0)),
        int(getattr(endpoint, "_backlog", 50)),
    )


def leave_socket_open(port: object) -> None:
    """
    Make the listening C{port}'s C{stopListening} close its descriptor but
    not shut its socket down, so that another process sharing the socket
    (a restart's next generation) goes on accepting from it.

    Relies on C{tcp.Port._shouldShutdown}: C{True} for a socket the port
    made, whose C{shutdown()} at a stop ends listening for every holder;
    Twisted sets it C{False} itself for an adopted socket.  Other ports
    (UNIX sockets) do not shut down.
    """
    if getattr(port, "_shouldShutdown", False):
        port._shouldShutdown = False  # type: ignore[attr-defined]


def accept_few(port: object, most: int) -> None:
    """
    Have the listening TCP C{port} accept at most C{most} connections each
    time its socket is ready, where Twisted accepts up to as many more as
    it took the last time (100 at first, growing by 20): processes sharing
    one listening socket then take turns, where the first awake took all.

    Relies on C{tcp.Port.doRead} reading C{self.numberAccepts} as the most
    connections to accept in one call, and setting it after each.
    """
    if not isinstance(getattr(port, "numberAccepts", None), int):
        return
    port.__class__ = _few_accepts(type(port), most)


def _few_accepts(base: type, most: int) -> type:
    def get(self: object) -> int:
        return most

    def ignore(self: object, value: int) -> None:
        pass

    namespace = {"numberAccepts": property(get, ignore), "__module__": __name__}
    return type(base.__name__, (base,), namespace)


def asyncio_event_loop(reactor: object) -> AbstractEventLoop | None:
    """
    The asyncio event loop C{reactor} runs on, if it is an
    C{AsyncioSelectorReactor}; else C{None}.

    Relies on C{AsyncioSelectorReactor._asyncioEventloop}: the reactor has
    no public accessor for its loop.  Never imports the asyncio reactor
    module: if nobody has, C{reactor} cannot be one.
    """
    module = sys.modules.get("twisted.internet.asyncioreactor")
    if module is None or not isinstance(reactor, module.AsyncioSelectorReactor):
        return None
    loop: AbstractEventLoop = reactor._asyncioEventloop
    return loop


def reactor_cutting_connections(reactor: IReactorCore) -> bool:
    """
    Whether C{reactor}, whose shutdown has begun, is now dropping every
    connection.

    Relies on the order of C{ReactorBase}'s own C{'during' 'shutdown'}
    triggers: C{crash()}, which sets the public C{running} to False, comes
    before C{disconnectAll()}, which loses every connection (as a plain
    C{ConnectionLost}, the same failure as a client's reset).
    """
    return not reactor.running


_ACCEPT_FORMATS = {
    "EMFILE encountered; releasing reserved file descriptor.": "",
    "EMFILE recovery: Closed socket from {address}": "EMFILE",
    "Re-reserving EMFILE recovery file descriptor.": "",
    "Could not accept new connection ({acceptError})": "?",
}


def accept_failure(event: LogEvent) -> str | None:
    """
    For a log event of a listening port: C{None} if it is not about a failed
    accept; C{""} if it is but turned no client away by itself; else the
    error of the client turned away (C{"EMFILE"}, C{"ENFILE"}...).

    Relies on the formats C{twisted.internet.tcp._accept} logs with: on
    C{EMFILE} it frees a reserved descriptor, accepts and at once closes
    each waiting client (one line each, plus two); on C{ENFILE}, C{ENOBUFS},
    C{ENOMEM} (or C{EMFILE} with no reserve) it logs one line and leaves the
    client waiting.
    """
    kind = _ACCEPT_FORMATS.get(event.get("log_format", ""))
    if kind == "?":
        return str(event.get("acceptError", "accept error"))
    return kind


def redirect_accept_log(port: Any, observer: ILogObserver) -> bool:
    """
    Send what C{port} (a C{tcp.Port}) logs about accepting to C{observer};
    say whether it could be done.

    Relies on C{tcp.Port._logger}, whose namespace and observer its
    C{doRead} logs accept errors through (a line per failed accept).
    """
    logger = getattr(port, "_logger", None)
    if not isinstance(logger, Logger):
        return False
    port._logger = Logger(namespace=logger.namespace, observer=observer)
    return True
