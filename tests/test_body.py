"""
Request bodies bounded (L{twisted_close.bound_request_bodies} and
C{WorkResource(max_body=)}) on the closedemo site in memory: C{413} with a
one-line reason at once, the connection closed, nothing read past the bound.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site

from twisted_close import DelayedResource, Ledger, Rejection, bound_request_bodies
from twisted_close.testing import InMemoryServer

from .helpers import demo_server


def post_head(length: int) -> bytes:
    return b"POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % (
        length,
    )


class SiteBoundTests(SynchronousTestCase):
    def test_a_length_over_the_bound_gets_413_before_the_body(self) -> None:
        server, ledger = demo_server(max_body=1000)
        client = server.connect()
        client.send(post_head(60_000_000), b"POST")
        response = client.response
        assert response is not None
        self.assertEqual(response.status, 413)
        self.assertEqual(
            response.body, b"request body over 1,000 bytes (60,000,000 bytes)\n"
        )
        self.assertEqual(response.header("Connection"), "close")
        self.assertTrue(client.closed_by_server)
        self.assertEqual(ledger.rejections[Rejection.BODY_TOO_LARGE], 1)

    def test_a_chunked_body_is_cut_with_413_at_the_bound(self) -> None:
        server, ledger = demo_server(max_body=1000)
        client = server.connect()
        client.send(
            b"POST /up HTTP/1.1\r\nHost: localhost\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            b"POST",
        )
        for _ in range(3):
            client.send(b"1f4\r\n" + b"x" * 500 + b"\r\n")
        response = client.response
        assert response is not None
        self.assertEqual(response.status, 413)
        self.assertEqual(response.body, b"request body over 1,000 bytes\n")
        self.assertTrue(client.closed_by_server)
        self.assertEqual(ledger.rejections[Rejection.BODY_TOO_LARGE], 1)

    def test_a_body_within_the_bound_reaches_the_resource(self) -> None:
        server, _ = demo_server(max_body=1000)
        client = server.connect()
        client.request("/up", method="POST", body=b"x" * 1000)
        response = client.response
        assert response is not None
        self.assertEqual(response.status, 405)  # the demo takes GET and HEAD
        self.assertFalse(client.closed_by_server)

    def test_zero_takes_no_body_and_every_get(self) -> None:
        server, _ = demo_server(max_body=0)
        client = server.connect()
        client.request("/?delay=0")
        server.advance(0)
        self.assertEqual([r.status for r in client.responses], [200])
        client.send(post_head(1), b"POST")
        self.assertEqual(
            client.responses[1].body, b"this server takes no request body\n"
        )

    def test_the_default_bound_is_64_kib(self) -> None:
        server, _ = demo_server()
        client = server.connect()
        client.send(post_head(64 * 1024 + 1), b"POST")
        response = client.response
        assert response is not None
        self.assertEqual(response.status, 413)

    def test_a_bad_bound_is_a_value_error(self) -> None:
        site = Site(DelayedResource(clock=Clock()))
        for bad in (-1, 1.5, True, "1"):
            with self.assertRaises(ValueError):
                bound_request_bodies(site, bad)  # type: ignore[arg-type]


class ResourceBoundTests(SynchronousTestCase):
    def serve(self, max_body: int | None) -> tuple[InMemoryServer, Ledger]:
        clock = Clock()
        ledger = Ledger(clock)
        resource = DelayedResource(
            "hi", 0, clock=clock, ledger=ledger, max_body=max_body
        )
        return InMemoryServer(resource, clock=clock), ledger

    def test_a_body_over_the_resource_bound_gets_413_and_a_close(self) -> None:
        server, ledger = self.serve(4)
        client = server.connect()
        client.request("/", body=b"12345")
        response = client.response
        assert response is not None
        self.assertEqual(response.status, 413)
        self.assertEqual(response.body, b"request body over 4 bytes (5 bytes)\n")
        server.advance(0)
        self.assertTrue(client.closed_by_server)
        self.assertEqual(ledger.rejections[Rejection.BODY_TOO_LARGE], 1)
        self.assertEqual(ledger.pending, 0)

    def test_a_body_within_it_is_answered(self) -> None:
        server, _ = self.serve(4)
        client = server.connect()
        client.request("/", body=b"1234")
        server.advance(0)
        self.assertEqual([r.status for r in client.responses], [200])

    def test_no_bound_takes_any_body(self) -> None:
        server, _ = self.serve(None)
        client = server.connect()
        client.request("/", body=b"x" * 200_000)
        server.advance(0)
        self.assertEqual([r.status for r in client.responses], [200])

    def test_a_bad_bound_is_a_value_error(self) -> None:
        for bad in (-1, 1.5, True):
            with self.assertRaises(ValueError):
                DelayedResource(clock=Clock(), max_body=bad)  # type: ignore[arg-type]
