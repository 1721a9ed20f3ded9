"""
How a client leaves, told truthfully, over real sockets on 127.0.0.1 and
the global reactor: HTTP/1.1 over TLS (Python's C{ssl} as the client, a
real handshake) and half-closes (C{shutdown(SHUT_WR)}) over HTTP/1.0 and
HTTP/1.1.

Every wait polls a condition with a deadline; no sleep decides a result.
"""

from __future__ import annotations

import socket
import ssl
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from twisted.internet import reactor as _reactor
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.internet.threads import deferToThread
from twisted.web.server import Site

from twisted_close import ConnectionPolicy, DelayedResource, Ending, Ledger, Outcome
from twisted_close._policy import HalfClose

from ..helpers import TLSFiles, get_request
from ..realtcp import clock, twisted_test, wait_for
from .test_h2 import tls  # noqa: F401 (the fixture)

# Twisted's own TLS setup hands pyOpenSSL objects to pyOpenSSL; not ours.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Passing pyOpenSSL .* objects is deprecated:DeprecationWarning"
)


@dataclass
class Served:
    port: IListeningPort
    ledger: Ledger
    outcomes: list[Outcome] = field(default_factory=list)
    sockets: list[socket.socket] = field(default_factory=list)

    @property
    def number(self) -> int:
        address: Any = self.port.getHost()
        return int(address.port)


@asynccontextmanager
async def serving(
    description: str, half_close: HalfClose = "leave"
) -> AsyncIterator[Served]:
    ledger = Ledger(clock)
    policy = ConnectionPolicy(half_close=half_close)
    site = Site(DelayedResource(b"hello", 5, clock=clock, ledger=ledger, policy=policy))
    port = await serverFromString(_reactor, description).listen(site)
    served = Served(port, ledger)
    ledger.observe(served.outcomes.append)
    try:
        yield served
    finally:
        for sock in served.sockets:
            sock.close()
        await wait_for(lambda: ledger.pending == 0, "nothing pending")
        stopped = port.stopListening()
        if stopped is not None:
            await stopped


# -- TLS ----------------------------------------------------------------------


def _connect_tls(number: int, cafile: str) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=cafile)
    raw = socket.create_connection(("127.0.0.1", number), timeout=5)
    return context.wrap_socket(raw, server_hostname="localhost")


def _drain(client: ssl.SSLSocket) -> None:
    # Read what the server sent unasked (TLS 1.3 session tickets): a socket
    # closed with unread data sends a reset, not a FIN.
    client.setblocking(False)
    try:
        client.recv(1)
    except ssl.SSLWantReadError:
        pass
    client.setblocking(True)


def _close(client: ssl.SSLSocket) -> None:
    # No close_notify: Python's ssl never sends one on close().
    client.close()


def _unwrap_and_close(client: ssl.SSLSocket) -> None:
    client.settimeout(5)
    plain = client.unwrap()  # close_notify, then the server's
    plain.close()


def _reset(client: ssl.SSLSocket) -> None:
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()


@pytest.mark.parametrize(
    ("leave", "ending"),
    [
        pytest.param(_close, Ending.CLIENT_CLOSED_NO_TLS_CLOSE, id="fin"),
        pytest.param(_unwrap_and_close, Ending.CLIENT_CLOSED, id="close_notify"),
        pytest.param(_reset, Ending.CLIENT_RESET, id="rst"),
    ],
)
@twisted_test
async def test_a_tls_client_leaving_is_told_by_how(
    tls: TLSFiles,  # noqa: F811
    leave: Callable[[ssl.SSLSocket], None],
    ending: Ending,
) -> None:
    """
    Twisted's TLS layer hands the request a bare C{ConnectionLost} for a
    FIN without C{close_notify} and for a reset alike; the reason TCP gave
    below it tells them apart.
    """
    async with serving(tls.listen) as served:
        client = await deferToThread(_connect_tls, served.number, str(tls.cert))
        client.sendall(get_request("/slow"))
        await wait_for(lambda: served.ledger.pending == 1, "the request to pend")
        _drain(client)
        await deferToThread(leave, client)
        await wait_for(lambda: served.outcomes, "the outcome")
        [outcome] = served.outcomes
        assert (outcome.path, outcome.ending, outcome.cancelled) == (
            "/slow",
            ending,
            1,
        )
        assert outcome.elapsed < 2
        assert served.ledger.interruptions == {ending: 1}


# -- Half-close ---------------------------------------------------------------


def _connect(number: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", number), timeout=5)
    sock.setblocking(False)
    return sock


def _received(sock: socket.socket, into: bytearray) -> bool:
    """
    Read what has come; say whether the server has closed its side.
    """
    while True:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return False
        except ConnectionResetError:
            return True
        if not data:
            return True
        into += data


@pytest.mark.parametrize("version", ["1.0", "1.1"], ids=["http10", "http11"])
@twisted_test
async def test_a_half_closed_client_has_left_by_default(
    version: str,
) -> None:
    """
    By default (C{half_close="leave"}), a FIN while the request is in hand
    is the client leaving, as Node and nginx take it: the work is cancelled
    and nothing is answered.  TCP does not tell a half-close from a close.
    """
    async with serving("tcp:0:interface=127.0.0.1") as served:
        sock = _connect(served.number)
        served.sockets.append(sock)
        sock.sendall(get_request("/slow?delay=0.5", version))
        await wait_for(lambda: served.ledger.pending == 1, "the request to pend")
        sock.shutdown(socket.SHUT_WR)
        await wait_for(lambda: served.outcomes, "the outcome")
        received = bytearray()
        await wait_for(lambda: _received(sock, received), "the server to close")
        assert bytes(received) == b""
        [outcome] = served.outcomes
        assert (outcome.ending, outcome.cancelled) == (Ending.CLIENT_CLOSED, 1)


@pytest.mark.parametrize("version", ["1.0", "1.1"], ids=["http10", "http11"])
@twisted_test
async def test_a_half_closed_client_is_answered_when_asked(
    version: str,
) -> None:
    """
    With C{half_close="answer"} (RFC 9112 section 9.6), a client that shuts
    down its sending side after its request still gets the answer, then
    the server closes; the outcome says C{client half-closed}, since the
    server cannot know that a half-close was not a close.
    """
    async with serving("tcp:0:interface=127.0.0.1", half_close="answer") as served:
        sock = _connect(served.number)
        served.sockets.append(sock)
        sock.sendall(get_request("/slow?delay=0.5", version))
        await wait_for(lambda: served.ledger.pending == 1, "the request to pend")
        sock.shutdown(socket.SHUT_WR)
        received = bytearray()
        await wait_for(lambda: _received(sock, received), "the answer and a close")
        head, _, body = bytes(received).partition(b"\r\n\r\n")
        assert head.split(b" ")[1] == b"200"
        assert body == b"hello"
        [outcome] = served.outcomes
        assert (outcome.path, outcome.ending, outcome.cancelled) == (
            "/slow",
            Ending.CLIENT_HALF_CLOSED,
            0,
        )
        # Answered at its delay, not cut at the half-close; the watch starts
        # its clock just after the answer's timer is set, hence the margin.
        assert outcome.elapsed >= 0.49
        assert outcome.detail == "answered"
        assert served.ledger.interruptions == {Ending.CLIENT_HALF_CLOSED: 1}


@twisted_test
async def test_a_half_closed_client_that_resets_is_still_seen() -> None:
    """
    Once half-closed, the connection is not read; a reset is seen from the
    socket's TCP state within a second, and the work is cancelled.
    """
    async with serving("tcp:0:interface=127.0.0.1", half_close="answer") as served:
        sock = _connect(served.number)
        served.sockets.append(sock)
        sock.sendall(get_request("/slow?delay=4"))
        await wait_for(lambda: served.ledger.pending == 1, "the request to pend")
        sock.shutdown(socket.SHUT_WR)
        left = clock.seconds()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        served.sockets.remove(sock)
        await wait_for(lambda: served.outcomes, "the outcome", timeout=3)
        [outcome] = served.outcomes
        assert (outcome.ending, outcome.cancelled) == (Ending.CLIENT_RESET, 1)
        assert clock.seconds() - left < 2.5


@twisted_test
async def test_an_idle_half_closed_connection_is_closed() -> None:
    async with serving("tcp:0:interface=127.0.0.1", half_close="answer") as served:
        sock = _connect(served.number)
        served.sockets.append(sock)
        sock.sendall(get_request("/first?delay=0"))
        received = bytearray()
        await wait_for(lambda: served.outcomes, "the first answer")
        sock.shutdown(socket.SHUT_WR)
        await wait_for(lambda: _received(sock, received), "the server to close")
        assert bytes(received).endswith(b"hello")
        [outcome] = served.outcomes
        assert outcome.ending is Ending.COMPLETED
