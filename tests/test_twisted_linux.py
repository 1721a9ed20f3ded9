"""
The Twisted behaviours that L{twisted_close._linux} relies on (Linux socket
facts (TCP_INFO)), each pinned by a test that fails if a Twisted upgrade
changes it.
"""

from __future__ import annotations

import socket

from twisted_close._linux import (
    TCP_CLOSE,
    TCP_CLOSE_WAIT,
    acked_and_unacknowledged,
    bytes_acked,
    bytes_unacknowledged,
    tcp_state,
    unanswered,
)

from .twisted_pins import _settled, _Socket


def test_tcp_state_after_a_fin_and_after_a_reset() -> None:
    pair = _Socket()
    try:
        assert tcp_state(pair.server) not in (None, TCP_CLOSE, TCP_CLOSE_WAIT)
        pair.client.shutdown(socket.SHUT_WR)
        assert _settled(lambda: tcp_state(pair.server) == TCP_CLOSE_WAIT)
    finally:
        pair.close()
    pair = _Socket()
    try:
        pair.reset_by_client()
        assert _settled(lambda: tcp_state(pair.server) == TCP_CLOSE)
    finally:
        pair.close()
    # A closed socket cannot be asked.
    assert tcp_state(pair.server) is None


def test_nothing_unanswered_on_a_healthy_connection() -> None:
    # Retransmissions and probes left unanswered are read from TCP_INFO
    # (what the peer-timeout tests over a pulled link see set).
    pair = _Socket()
    try:
        pair.client.sendall(b"x")
        assert _settled(lambda: pair.server.recv(1) == b"x")
        assert unanswered(pair.server) is False
    finally:
        pair.close()
    # A socket that is not TCP cannot be asked.
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        assert unanswered(udp) is False
        assert tcp_state(udp) is None
    finally:
        udp.close()


def test_bytes_acknowledged_by_the_peers_kernel() -> None:
    # tcpi_bytes_acked counts what the peer's kernel acknowledged, though
    # its application read nothing; SIOCOUTQ what it has not yet.
    pair = _Socket()
    try:
        assert (bytes_acked(pair.server), bytes_unacknowledged(pair.server)) == (0, 0)
        assert acked_and_unacknowledged(pair.server) == (0, 0)
        pair.server.sendall(b"x" * 60000)
        assert _settled(lambda: bytes_acked(pair.server) == 60000)
        assert bytes_unacknowledged(pair.server) == 0
        # Nothing in flight or unsent (tcpi_unacked, tcpi_notsent_bytes):
        # SIOCOUTQ is not asked, and would say 0.
        assert acked_and_unacknowledged(pair.server) == (60000, 0)
        # A peer that stops acknowledging: its receive buffer full.
        pair.client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        pair.server.setblocking(False)
        sent = 0
        try:
            while sent < 50_000_000:
                sent += pair.server.send(b"y" * 65536)
        except BlockingIOError:
            pass
        unacked = bytes_unacknowledged(pair.server)
        assert unacked is not None and unacked > 0
        acked = bytes_acked(pair.server)
        assert acked is not None and acked + unacked == 60000 + sent
        # In flight or unsent: the same two figures.
        assert acked_and_unacknowledged(pair.server) == (acked, unacked)
    finally:
        pair.close()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        assert bytes_acked(udp) is None
        assert acked_and_unacknowledged(udp) is None
    finally:
        udp.close()
