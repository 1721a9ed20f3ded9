"""
The Host check: only this machine's names, and those allowed, are answered
(DNS rebinding), on every path of the closedemo site, in memory.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from twisted_close import AllowedHosts, HostCheck, Ledger
from twisted_close.testing import InMemoryServer

from .helpers import demo_server

# StringTransport's own address: the one the connection came in on.
LOCAL = "10.0.0.1"


def serve(*allowed: str) -> tuple[InMemoryServer, Ledger]:
    return demo_server(0, allowed_hosts=allowed)


def answer(server: InMemoryServer, host: str | None, path: str = "/stats") -> int:
    client = server.connect().request(path, "HEAD", host=host)
    server.advance(0)
    response = client.response
    assert response is not None
    return response.status


class HostCheckTests(SynchronousTestCase):
    def test_this_machines_names_are_answered(self) -> None:
        server, _ = serve()
        for host in (
            "localhost",
            "LocalHost:1337",
            "localhost.",
            "b0.localhost",
            "b3.localhost:1337",
            "127.0.0.1",
            "127.0.0.1:1337",
            "127.45.6.7",
            "[::1]",
            "[::1]:1337",
            "[::ffff:127.0.0.1]:1337",
            f"{LOCAL}:8080",
        ):
            self.assertEqual(answer(server, host), 200, host)

    def test_other_names_get_421_with_a_reason(self) -> None:
        server, ledger = serve()
        for host in (
            "attacker.example",
            "attacker.example:1337",
            "localhost.attacker.example",
            "127.0.0.1.nip.io",
            "10.0.0.2",
            "[2001:db8::1]",
            "0x7f000001",
        ):
            self.assertEqual(answer(server, host), 421, host)
        refused = server.connect().request("/stats", host="attacker.example").response
        assert refused is not None
        self.assertEqual(refused.body, b"host attacker.example is not served here\n")
        self.assertEqual(refused.header("content-type"), "text/plain; charset=utf-8")
        self.assertEqual(ledger.snapshot()["pending"], 0)

    def test_an_absolute_target_is_judged_by_its_authority(self) -> None:
        # RFC 9112 section 3.2.2: the target's authority wins over Host.
        server, _ = serve()
        for target, host, status in (
            ("http://evil.example/stats", "localhost", 421),
            ("HTTPS://evil.example:443/?x=1", "localhost", 421),
            ("http://localhost/stats", "evil.example", 200),
            ("http://127.0.0.1:1337", "evil.example", 200),
            ("http://user@localhost/stats", "localhost", 400),
            ("http:///stats", "localhost", 400),
        ):
            self.assertEqual(answer(server, host, target), status, target)
        refused = server.connect().request("http://evil.example/", host="localhost")
        assert refused.response is not None
        self.assertEqual(
            refused.response.body, b"host evil.example is not served here\n"
        )

    def test_every_path_is_checked(self) -> None:
        server, ledger = serve()
        for path in ("/", "/slow", "/stats", "/events", "/outcomes", "/demo", "/x/y"):
            client = server.connect().request(path, host="attacker.example")
            self.assertEqual(client.response.status, 421, path)  # type: ignore[union-attr]
        self.assertEqual(ledger.snapshot(), Ledger().snapshot())

    def test_allowed_names(self) -> None:
        server, _ = serve("www.example.org", "*.example.com", "[2001:db8::7]")
        self.assertEqual(answer(server, "www.example.org"), 200)
        self.assertEqual(answer(server, "WWW.example.org:443"), 200)
        self.assertEqual(answer(server, "a.example.com"), 200)
        self.assertEqual(answer(server, "a.b.example.com"), 200)
        self.assertEqual(answer(server, "[2001:db8::7]:8443"), 200)
        self.assertEqual(answer(server, "localhost"), 200)
        self.assertEqual(answer(server, "example.com"), 421)
        self.assertEqual(answer(server, "badexample.com"), 421)
        self.assertEqual(answer(server, "example.org"), 421)

    def test_a_star_allows_any(self) -> None:
        server, _ = serve("*")
        self.assertEqual(answer(server, "attacker.example"), 200)

    def test_a_missing_or_bad_host_is_a_400(self) -> None:
        server, _ = serve()
        self.assertEqual(answer(server, None), 400)
        self.assertEqual(answer(server, "a b"), 400)
        self.assertEqual(answer(server, "[zz]"), 400)
        self.assertEqual(answer(server, ""), 400)
        twice = server.connect()
        twice.send(
            b"GET /stats HTTP/1.1\r\nHost: localhost\r\nHost: localhost\r\n\r\n", b"GET"
        )
        assert twice.response is not None
        self.assertEqual(twice.response.status, 400)
        self.assertEqual(twice.response.body, b"more than one Host header\n")

    def test_http_1_0_without_host_is_answered(self) -> None:
        # HTTP/1.0 has no Host; browsers always send one.
        server, _ = serve()
        client = server.connect()
        client.send(b"GET /stats HTTP/1.0\r\n\r\n", b"GET")
        server.advance(0)
        self.assertIn(b"HTTP/1.0 200 ", client.transport.value())
        refused = server.connect()
        refused.send(b"GET /stats HTTP/1.0\r\nHost: attacker.example\r\n\r\n", b"GET")
        self.assertIn(b"HTTP/1.0 421 Misdirected Request", refused.transport.value())

    def test_bad_patterns_are_refused(self) -> None:
        for bad in ("", "a b", "*.", "**.example.com", "example.com:80", "a/b", "x*"):
            with self.assertRaises(ValueError, msg=bad):
                AllowedHosts([bad])

    def test_a_leaf_is_checked_too(self) -> None:
        from twisted_close import DelayedResource

        clock = Clock()
        leaf = DelayedResource("hi", 0, clock=clock, ledger=Ledger())
        server = InMemoryServer(HostCheck(leaf), clock=clock)
        self.assertEqual(answer(server, "attacker.example", "/a/b"), 421)
        self.assertEqual(answer(server, "localhost", "/a/b"), 200)
