"""
L{ForwardedFor}: behind a trusted proxy, the client is the last untrusted
address of C{X-Forwarded-For}; from anyone else the header is ignored.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http import combinedLogFormatter
from twisted.web.resource import Resource
from twisted.web.test.requesthelper import DummyRequest

from twisted_close import (
    DelayedResource,
    ForwardedFor,
    Ledger,
    Limits,
    Outcome,
    TrustedProxies,
    forwarded_client,
)
from twisted_close.testing import InMemoryServer

PROXIES = TrustedProxies(["127.0.0.1", "10.0.0.0/8", "fd00::/8"])


def walk(peer: str, *values: str) -> str | None:
    return forwarded_client(peer, [v.encode() for v in values] or None, PROXIES)


class TrustedProxiesTests(SynchronousTestCase):
    def test_addresses_and_networks_are_trusted(self) -> None:
        for host in ("127.0.0.1", "10.1.2.3", "fd00::7", "::ffff:10.0.0.1"):
            self.assertTrue(PROXIES.trusts(host), host)
        for host in ("127.0.0.2", "11.0.0.1", "2001:db8::1", "junk", ""):
            self.assertFalse(PROXIES.trusts(host), host)

    def test_what_is_no_address_nor_network_is_refused_with_a_reason(self) -> None:
        for bad in ("", "localhost", "10.0.0.0/33", "1.2.3.4.5", "10.0.0.1:80"):
            with self.assertRaises(ValueError, msg=bad) as raised:
                TrustedProxies([bad])
            self.assertIn("is not an IP", str(raised.exception))
            self.assertNotIn("\n", str(raised.exception))


class WalkTests(SynchronousTestCase):
    def test_the_client_is_the_last_untrusted_address(self) -> None:
        # What nginx's $proxy_add_x_forwarded_for makes: the client's own
        # header, then the address that connected to nginx.
        self.assertEqual(walk("127.0.0.1", "203.0.113.9"), "203.0.113.9")
        self.assertEqual(walk("127.0.0.1", "6.6.6.6, 203.0.113.9"), "203.0.113.9")
        # Past trusted proxies in the chain.
        self.assertEqual(
            walk("127.0.0.1", "6.6.6.6, 203.0.113.9, 10.0.0.5"), "203.0.113.9"
        )
        # Several header lines are one list, in order.
        self.assertEqual(walk("127.0.0.1", "6.6.6.6", "203.0.113.9"), "203.0.113.9")
        self.assertEqual(walk("127.0.0.1", " 2001:DB8::1 "), "2001:db8::1")

    def test_an_untrusted_peers_header_is_ignored(self) -> None:
        self.assertIsNone(walk("127.0.0.2", "203.0.113.9"))
        self.assertIsNone(walk("203.0.113.9", "10.0.0.1"))

    def test_no_header_keeps_the_peer(self) -> None:
        self.assertIsNone(walk("127.0.0.1"))

    def test_all_trusted_gives_the_first(self) -> None:
        self.assertEqual(walk("127.0.0.1", "10.0.0.1, 10.0.0.2"), "10.0.0.1")

    def test_what_the_client_wrote_left_of_its_address_is_never_read(self) -> None:
        self.assertEqual(walk("127.0.0.1", "junk, , 203.0.113.9"), "203.0.113.9")

    def test_a_chain_that_names_no_address_keeps_the_proxy(self) -> None:
        for header in (
            "unknown",
            "203.0.113.9, junk",
            "203.0.113.9,",
            "",
            "203.0.113.9:4444",
            "junk, 10.0.0.1",
            "\xff",
        ):
            self.assertIsNone(walk("127.0.0.1", header), header)


addresses = st.one_of(
    st.ip_addresses(v=4).map(str),
    # An IPv4-mapped IPv6 address is its IPv4 address: drawn as that.
    st.ip_addresses(v=6)
    .map(str)
    .filter(lambda a: ipaddress.IPv6Address(a).ipv4_mapped is None),
)


class WalkProperties(SynchronousTestCase):
    @given(st.lists(addresses, min_size=1, max_size=8))
    def test_the_answer_is_the_rightmost_untrusted_else_the_first(
        self, chain: list[str]
    ) -> None:
        got = walk("127.0.0.1", ", ".join(chain))
        untrusted = [a for a in chain if not PROXIES.trusts(a)]
        expected = untrusted[-1] if untrusted else chain[0]
        self.assertEqual(got, str(ipaddress.ip_address(expected)))

    @given(st.lists(addresses, min_size=1, max_size=8), addresses)
    def test_a_client_cannot_hide_behind_what_it_writes(
        self, forged: list[str], client: str
    ) -> None:
        # Whatever a client puts in its header, a proxy that appends the
        # address it saw makes that address the client, unless it is a
        # trusted one.
        got = walk("127.0.0.1", ", ".join([*forged, client]))
        if not PROXIES.trusts(client):
            self.assertEqual(got, str(ipaddress.ip_address(client)))

    @given(st.lists(addresses, max_size=8), addresses)
    def test_an_untrusted_peer_is_its_own_client(
        self, chain: list[str], peer: str
    ) -> None:
        if not PROXIES.trusts(peer):
            self.assertIsNone(walk(peer, ", ".join(chain)))


def serve() -> tuple[InMemoryServer, Ledger, Clock]:
    clock = Clock()
    ledger = Ledger(clock, limits=Limits(max_pending_per_client=1))
    root = DelayedResource("hi", 5, clock=clock, ledger=ledger)
    return InMemoryServer(ForwardedFor(root, ["127.0.0.1"]), clock=clock), ledger, clock


def xff(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


class ForwardedForTests(SynchronousTestCase):
    def test_each_forwarded_client_gets_its_own_cap(self) -> None:
        server, ledger, _ = serve()
        proxy = server.connect("127.0.0.1")
        proxy.request("/a", headers=xff("198.51.100.1"))
        other = server.connect("127.0.0.1")
        other.request("/b", headers=xff("198.51.100.2"))
        again = server.connect("127.0.0.1")
        again.request("/c", headers=xff("198.51.100.1"))
        server.advance(0)
        self.assertEqual(ledger.limits.pending_of("198.51.100.1"), 1)
        self.assertEqual(ledger.limits.pending_of("198.51.100.2"), 1)
        self.assertIsNone(proxy.response)
        self.assertIsNone(other.response)
        response = again.response
        assert response is not None
        self.assertEqual(response.status, 429)

    def test_the_outcome_names_the_forwarded_client(self) -> None:
        server, ledger, _ = serve()
        outcomes: list[Outcome] = []
        ledger.observe(outcomes.append)
        client = server.connect("127.0.0.1").request("/a", headers=xff("198.51.100.1"))
        server.advance(0)
        client.close()
        server.advance(0)
        self.assertEqual([o.client for o in outcomes], ["198.51.100.1"])

    def test_an_untrusted_peer_cannot_name_another_client(self) -> None:
        server, ledger, _ = serve()
        server.connect("127.0.0.2").request("/a", headers=xff("198.51.100.1"))
        server.connect("127.0.0.2").request("/b", headers=xff("198.51.100.2"))
        server.advance(0)
        self.assertEqual(ledger.limits.pending_of("127.0.0.2"), 1)
        self.assertEqual(ledger.limits.pending_of("198.51.100.1"), 0)

    def test_a_bad_trusted_address_is_refused(self) -> None:
        with self.assertRaises(ValueError):
            ForwardedFor(DelayedResource("hi", 0, ledger=Ledger(Clock())), ["nope"])

    def test_the_access_log_names_the_forwarded_client(self) -> None:
        request: Any = DummyRequest([b"x"])
        request.code, request.sentLength = 200, 0
        request.client = IPv4Address("TCP", "127.0.0.1", 4321)
        request.requestHeaders.addRawHeader(b"x-forwarded-for", b"203.0.113.9")
        root = Resource()
        ForwardedFor(root, ["127.0.0.1"]).getChildWithDefault(
            b"x",
            request,
        )
        line = combinedLogFormatter("[ts]", request)
        self.assertTrue(line.startswith('"203.0.113.9" - - [ts]'), line)
