"""
An answer is completed when the client's TCP acknowledged its last byte,
over real loopback sockets: a large answer to a client that stops reading
stays delivering while bytes are unacknowledged, and completes once it
reads; the client's kernel, not its application, is what acknowledges.
"""

from __future__ import annotations

import socket

from twisted.internet import reactor as _reactor
from twisted.internet.endpoints import serverFromString
from twisted.internet.threads import deferToThread
from twisted.web.server import Site

from twisted_close import ConnectionPolicy, DelayedResource, Ending, Ledger, Outcome
from twisted_close._outcome import Pending

from ..realtcp import clock, twisted_test, wait_for

BIG = 4_000_000


async def _serve(policy: ConnectionPolicy) -> tuple[Ledger, list[Outcome], int, object]:
    ledger = Ledger(clock)
    outcomes: list[Outcome] = []
    ledger.observe(outcomes.append)
    resource = DelayedResource(b"x" * BIG, 0, clock=clock, ledger=ledger, policy=policy)
    port = await serverFromString(_reactor, "tcp:0:interface=127.0.0.1").listen(
        Site(resource)
    )
    return ledger, outcomes, port.getHost().port, port


def _slow_reader(number: int) -> socket.socket:
    sock = socket.socket()
    # A small window: most of the answer waits in the server's buffers.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", number))
    sock.sendall(b"GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n")
    return sock


def _read_all(sock: socket.socket) -> int:
    sock.settimeout(10)
    got = 0
    while got < BIG:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        got += len(chunk)
    return got


async def _handed_over(ledger: Ledger) -> Pending:
    # The answer (delay 0) handed to Twisted in full: its watch delivering.
    await wait_for(lambda: ledger.pending == 1, "the request")
    [watch] = ledger.live()
    await wait_for(lambda: watch.phase == "delivering", "the answer handed over")
    return watch


@twisted_test
async def test_a_large_answer_is_not_completed_while_bytes_are_unacknowledged() -> None:
    ledger, outcomes, number, port = await _serve(ConnectionPolicy())
    sock = _slow_reader(number)
    try:
        await wait_for(lambda: ledger.pending == 1, "the request")
        # Handed to Twisted at once (delay 0); the client reads nothing.
        [watch] = ledger.live()
        await wait_for(lambda: watch.phase == "delivering", "the answer handed over")
        waited = clock.seconds()
        await wait_for(lambda: clock.seconds() - waited > 0.5, "half a second")
        assert (ledger.completed, ledger.pending, outcomes) == (0, 1, [])
        assert await deferToThread(_read_all, sock) >= BIG
        await wait_for(lambda: ledger.completed == 1, "the acknowledgement")
        [outcome] = outcomes
        assert (outcome.ending, outcome.phase, outcome.delivery) == (
            Ending.COMPLETED,
            "delivering",
            "acknowledged",
        )
    finally:
        sock.close()
        await port.stopListening()  # type: ignore[attr-defined]


@twisted_test
async def test_a_client_gone_with_the_answer_unacknowledged_is_told_how_much() -> None:
    ledger, outcomes, number, port = await _serve(ConnectionPolicy())
    sock = _slow_reader(number)
    try:
        await _handed_over(ledger)
        # A reset with most of the answer never acknowledged.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        sock.close()
        await wait_for(lambda: outcomes, "the outcome")
        [outcome] = outcomes
        assert outcome.ending is Ending.ANSWER_NOT_ACKNOWLEDGED
        assert outcome.phase == "delivering"
        assert 0 < outcome.unacknowledged <= BIG + 200
        assert outcome.detail == f"{outcome.unacknowledged} bytes not acknowledged"
        assert (ledger.completed, ledger.interrupted) == (0, 1)
    finally:
        sock.close()
        await port.stopListening()  # type: ignore[attr-defined]


@twisted_test
async def test_delivery_written_counts_it_once_handed_over() -> None:
    _, outcomes, number, port = await _serve(ConnectionPolicy(delivery="written"))
    sock = _slow_reader(number)
    try:
        await wait_for(lambda: outcomes, "the outcome")
        [outcome] = outcomes
        assert (outcome.ending, outcome.delivery) == (Ending.COMPLETED, "written")
    finally:
        sock.close()
        await port.stopListening()  # type: ignore[attr-defined]
