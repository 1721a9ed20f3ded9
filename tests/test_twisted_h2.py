"""
The Twisted behaviours that L{twisted_close._twisted.h2} relies on (HTTP/2
streams), each pinned by a test that fails if a Twisted upgrade changes it.
"""

from __future__ import annotations

from typing import Any

import twisted.web.http
from h2.config import H2Configuration
from h2.connection import H2Connection as H2Client
from h2.errors import ErrorCodes
from h2.events import StreamReset
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web._http2 import H2Connection
from twisted.web.server import Site

from twisted_close._twisted.h2 import (
    abort_stream,
    answer_and_stop,
    h2_connection,
    h2_idle,
    record_stream_loss,
    stream_blocked,
    stream_end_pending,
    stream_queued,
)
from twisted_close._twisted.request import (
    abort_request,
    body_bounded,
    channel_of,
)

from .twisted_pins import (
    Holding,
    _client_events,
    _get_headers,
    _h2_answering,
    _past_the_window,
    _read_and_open_window,
    _site_protocol,
    _spin,
    h2_site_connection,
    held,
)


class H2StreamTests(SynchronousTestCase):
    def test_abort_stream_resets_the_stream(self) -> None:
        _server, client, transport, clock, request = _h2_answering()
        _client_events(client, transport)
        abort_stream(channel_of(request))
        clock.advance(0)
        self.assertEqual(
            [type(event) for event in _client_events(client, transport)],
            [StreamReset],
        )
        self.assertFalse(transport.disconnecting)
        abort_stream(object())  # nothing to abort: no error

    def test_abort_request_over_http11_aborts_the_connection(self) -> None:
        _, _, client, request = held()
        aborted: list[bool] = []
        untyped: Any = client.transport
        untyped.abortConnection = lambda: aborted.append(True)
        self.assertTrue(abort_request(request))
        self.assertEqual(aborted, [True])

    def test_an_end_held_back_by_flow_control_then_sent(self) -> None:
        server, client, transport, clock, request = _h2_answering()
        stream = channel_of(request)
        self.assertFalse(stream_blocked(stream))
        # Not finished: not done with either (so it is asked after the finish).
        early = stream_end_pending(stream)
        assert early is not None
        self.assertNoResult(early)
        self.assertIsNone(stream_end_pending(object()))
        self.assertIsNone(server._consumerBlocked)
        lost: list[Failure] = []
        record_stream_loss(stream, lost.append)
        _past_the_window(clock, request)
        self.assertTrue(request.finished)
        self.assertIn(1, server._streamCleanupCallbacks)
        self.assertLess(server.remainingOutboundWindow(1), 0)
        self.assertTrue(stream_blocked(stream))
        done = stream_end_pending(stream)
        assert done is not None
        self.assertNoResult(done)
        # The client reads and opens the window: the end goes out.
        _read_and_open_window(server, client, transport)
        _spin(clock)
        self.assertIsNone(self.successResultOf(done))
        self.assertIsNone(self.successResultOf(early))
        self.assertEqual(lost, [])  # the stream was not told it was lost
        self.assertNotIn(1, server._streamCleanupCallbacks)
        self.assertIsNone(stream_end_pending(stream))

    def test_a_blocked_transport_blocks_every_stream(self) -> None:
        server, _, _, _, request = _h2_answering()
        server.pauseProducing()
        self.assertIsNotNone(server._consumerBlocked)
        self.assertTrue(stream_blocked(channel_of(request)))
        server.resumeProducing()
        self.assertFalse(stream_blocked(channel_of(request)))
        self.assertFalse(stream_blocked(object()))

    def test_a_reset_after_the_finish_is_told_to_the_stream_first(self) -> None:
        server, client, _transport, clock, request = _h2_answering()
        stream = channel_of(request)
        order: list[str] = []
        record_stream_loss(
            stream,
            lambda reason: order.append(str(getattr(reason.value, "args", ("",))[0])),
        )
        _past_the_window(clock, request)
        done = stream_end_pending(stream)
        assert done is not None
        done.addCallback(lambda _: order.append("done"))
        client.reset_stream(1, ErrorCodes.CANCEL)
        server.dataReceived(client.data_to_send())
        self.assertEqual(len(order), 2)
        self.assertTrue(order[0].startswith("Stream reset with code "))
        self.assertEqual(order[1], "done")

    def test_a_lost_connection_after_the_finish_is_told_to_the_stream_first(
        self,
    ) -> None:
        server, _, _, clock, request = _h2_answering()
        stream = channel_of(request)
        order: list[str] = []
        record_stream_loss(
            stream, lambda reason: order.append(type(reason.value).__name__)
        )
        _past_the_window(clock, request)
        done = stream_end_pending(stream)
        assert done is not None
        done.addCallback(lambda _: order.append("done"))
        server.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(order, ["ConnectionLost", "done"])


def _h2_site_protocol(
    case: SynchronousTestCase,
) -> tuple[Any, Clock, H2Client, Holding]:
    """
    L{h2_site_connection} to a site of a L{Holding}, its C{H2Connection}
    on a clock.
    """
    clock = Clock()
    case.patch(twisted.web.http, "H2Connection", lambda: H2Connection(clock))
    resource = Holding()
    protocol, _, client = h2_site_connection(Site(resource, reactor=clock), clock)
    return protocol, clock, client, resource


class H2ConnectionTests(SynchronousTestCase):
    def test_the_connection_behind_the_sites_protocol(self) -> None:
        protocol, _, _, _ = _h2_site_protocol(self)
        self.assertIsInstance(h2_connection(protocol), H2Connection)
        http11, _ = _site_protocol()
        self.assertIsNone(h2_connection(http11))

    def test_idle_with_no_stream_open(self) -> None:
        protocol, clock, client, resource = _h2_site_protocol(self)
        connection = h2_connection(protocol)
        self.assertTrue(h2_idle(connection))
        client.send_headers(1, _get_headers("/"), end_stream=True)
        protocol.dataReceived(client.data_to_send())
        [request] = resource.requests
        self.assertFalse(h2_idle(connection))
        request.finish()
        # The stream's end was written: done with, gone from streams.
        _spin(clock)
        self.assertTrue(h2_idle(connection))
        # A transport that takes no more holds frames back.
        connection.pauseProducing()
        self.assertFalse(h2_idle(connection))
        connection.resumeProducing()
        self.assertTrue(h2_idle(connection))

    def test_a_stream_receiving_its_body_is_open(self) -> None:
        protocol, _, client, resource = _h2_site_protocol(self)
        connection = h2_connection(protocol)
        client.send_headers(1, [(":method", "POST"), *_get_headers("/")[1:]])
        client.send_data(1, b"part of a body")
        protocol.dataReceived(client.data_to_send())
        self.assertEqual(resource.requests, [])
        self.assertFalse(h2_idle(connection))


def _posting(length: int | None) -> tuple[Any, Any, Any, Any, list[Any]]:
    """
    Twisted's HTTP/2 server on a clock, its site's bodies bounded at 4
    bytes and refused with L{answer_and_stop}; a client that began a POST
    on stream 1 (announcing C{length}, if given) and sent no body yet.
    """
    refused: list[Any] = []

    def refuse(request: Any, n: int | None) -> None:
        refused.append(request)
        headers = [(b"content-length", b"3")]
        assert answer_and_stop(request.channel, 413, headers, b"no\n")

    clock = Clock()
    resource = Holding()
    site = Site(resource, reactor=clock)
    server: Any = H2Connection(clock)
    server.requestFactory = body_bounded(site.requestFactory, 4, refuse)
    server.site = server.factory = site
    transport = StringTransport()
    server.makeConnection(transport)
    client = H2Client(H2Configuration(client_side=True))
    client.initiate_connection()
    headers = [
        (":method", "POST"),
        (":scheme", "https"),
        (":authority", "localhost"),
        (":path", "/up"),
    ]
    if length is not None:
        headers.append(("content-length", str(length)))
    client.send_headers(1, headers)
    server.dataReceived(client.data_to_send())
    return server, client, transport, clock, refused


class AnswerAndStopTests(SynchronousTestCase):
    def test_a_body_announced_too_long_is_answered_then_its_stream_reset(
        self,
    ) -> None:
        server, client, transport, clock, refused = _posting(100)
        self.assertEqual(len(refused), 1)
        # The stream is registered only after gotLength: the answer waits a turn.
        _spin(clock)
        events = _client_events(client, transport)
        kinds = [type(e).__name__ for e in events]
        self.assertIn("ResponseReceived", kinds)
        [answer] = [e for e in events if type(e).__name__ == "ResponseReceived"]
        self.assertEqual(dict(answer.headers)[b":status"], b"413")
        self.assertIn("StreamEnded", kinds)
        [reset] = [e for e in events if isinstance(e, StreamReset)]
        self.assertEqual(reset.error_code, ErrorCodes.NO_ERROR)
        # The connection goes on, and so does the client's sending: ignored.
        self.assertFalse(transport.disconnecting)
        self.assertNotIn(1, server.streams)
        self.assertFalse(answer_and_stop(object(), 413, [], b""))

    def test_a_body_of_unknown_length_is_cut_at_the_bound(self) -> None:
        server, client, transport, clock, refused = _posting(None)
        self.assertEqual(refused, [])
        client.send_data(1, b"abc")
        server.dataReceived(client.data_to_send())
        self.assertEqual(refused, [])
        client.send_data(1, b"defg")
        server.dataReceived(client.data_to_send())
        self.assertEqual(len(refused), 1)
        _spin(clock)
        kinds = [type(e).__name__ for e in _client_events(client, transport)]
        self.assertIn("ResponseReceived", kinds)
        self.assertIn("StreamReset", kinds)

    def test_a_stream_reset_by_the_client_first_gets_no_answer(self) -> None:
        server, client, transport, clock, _ = _posting(100)
        client.reset_stream(1)
        server.dataReceived(client.data_to_send())
        _spin(clock)
        kinds = [type(e).__name__ for e in _client_events(client, transport)]
        self.assertNotIn("ResponseReceived", kinds)


class StreamQueuedTests(SynchronousTestCase):
    def test_what_flow_control_holds_back_is_queued(self) -> None:
        _server, _client, _transport, clock, request = _h2_answering()
        stream = channel_of(request)
        self.assertEqual(stream_queued(stream), 0)
        _past_the_window(clock, request)
        # 70,000 written, the default window of 65,535 let out.
        self.assertEqual(stream_queued(stream), 70_000 - 65_535)
        self.assertEqual(stream_queued(object()), 0)
