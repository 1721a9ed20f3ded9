"""
The in-memory harness users test their own resources with.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from twisted.web.server import Request as ServerRequest

from twisted_close.testing import InMemoryServer, dechunk


class Chunked(Resource):
    isLeaf = True

    def render_GET(self, request: ServerRequest) -> int:
        request.write(b"ab")
        request.write(b"cde")
        request.finish()
        return NOT_DONE_YET


class HarnessTests(SynchronousTestCase):
    def test_chunked_bodies_are_joined(self) -> None:
        response = InMemoryServer(Chunked()).get("/").response
        assert response is not None
        self.assertEqual(response.header("transfer-encoding"), "chunked")
        self.assertEqual(response.body, b"abcde")

    def test_pipelined_responses_are_split(self) -> None:
        client = InMemoryServer(Chunked()).connect()
        client.send(
            b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nHEAD /2 HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /3 HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET",
            b"HEAD",
            b"GET",
        )
        self.assertEqual([r.body for r in client.responses], [b"abcde", b"", b"abcde"])

    def test_a_server_close_is_noticed(self) -> None:
        server = InMemoryServer(Chunked())
        client = server.connect().request("/", headers={"Connection": "close"})
        self.assertTrue(client.closed_by_server)
        self.assertTrue(client.lost)
        response = client.response
        assert response is not None
        self.assertEqual(response.body, b"abcde")

    def test_clients_have_distinct_addresses_unless_given(self) -> None:
        server = InMemoryServer(Chunked(), clock=Clock())
        first, second = server.connect(), server.connect(host="10.0.0.7", port=5)
        self.assertNotEqual(
            first.transport.getPeer(), server.connect().transport.getPeer()
        )
        self.assertEqual(str(second.transport.getPeer().host), "10.0.0.7")


class Stream(Resource):
    isLeaf = True

    def render_GET(self, request: ServerRequest) -> int:
        request.write(b"data: 1\n\n: heartbeat\n\ndata: 2")
        return NOT_DONE_YET


class StreamingTests(SynchronousTestCase):
    def test_a_body_still_arriving_is_decoded_so_far(self) -> None:
        client = InMemoryServer(Stream()).get("/")
        self.assertIsNone(client.response)
        self.assertTrue(client.head.startswith(b"HTTP/1.1 200 "))
        self.assertEqual(client.body_so_far, b"data: 1\n\n: heartbeat\n\ndata: 2")

    def test_only_complete_event_stream_blocks_count(self) -> None:
        client = InMemoryServer(Stream()).get("/")
        self.assertEqual(client.sse_blocks, [["data: 1"], [": heartbeat"]])

    def test_dechunk_says_whether_the_body_ended(self) -> None:
        self.assertEqual(dechunk(b"2\r\nab\r\n0\r\n\r\nX"), (b"ab", b"X", True))
        self.assertEqual(dechunk(b"2\r\nab\r\n3\r\nc"), (b"ab", b"3\r\nc", False))
