"""
The delayed answer over HTTP/2: TLS on 127.0.0.1 with ALPN C{h2}, on the
global reactor, and a client driven by the C{h2} library.

What Twisted (C{twisted.web._http2.H2Connection}) tells a request's
C{notifyFinish()} errback:

  - a client's RST_STREAM: C{ConnectionLost("Stream reset with code 8")} for
    that stream alone; the other streams and the connection go on;
  - the whole connection going (clean TLS close, FIN or RST alike):
    C{ConnectionLost("Producing stopped")} for every open stream, because the
    transport stops its producer, the H2Connection, before it tells it of
    the loss;
  - a client's GOAWAY: C{ConnectionLost("Remote peer sent GOAWAY")} for every
    open stream.

Every wait polls a condition with a deadline; no sleep decides a result.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

# twisted[tls,http2] is in the test extra: these imports fail loudly rather
# than skip when it is missing.
from h2.config import H2Configuration
from h2.connection import H2Connection as H2Client
from h2.errors import ErrorCodes
from h2.events import (
    DataReceived,
    RemoteSettingsChanged,
    ResponseReceived,
    SettingsAcknowledged,
    StreamEnded,
    StreamReset,
)
from h2.settings import SettingCodes, Settings
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import (
    SSL4ClientEndpoint,
    connectProtocol,
    serverFromString,
)
from twisted.internet.interfaces import (
    IHandshakeListener,
    IListeningPort,
    ITCPTransport,
    ITransport,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.server import Site
from zope.interface import implementer

from twisted_close import (
    DelayedResource,
    Ending,
    HostCheck,
    Ledger,
    Limits,
    Outcome,
)
from twisted_close.closedemo.site import DemoRoot, build_site
from twisted_close.testing import outcome_events

from ..helpers import TLSFiles, self_signed
from ..realtcp import clock, fdset, tcp, twisted_test, wait_for

# Twisted's own TLS setup hands pyOpenSSL objects to pyOpenSSL; not ours.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Passing pyOpenSSL .* objects is deprecated:DeprecationWarning"
)


# -- A certificate for 127.0.0.1 and localhost --------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """
    A self-signed certificate for localhost and 127.0.0.1, as PEM files.
    """
    return self_signed(tmp_path_factory.mktemp("tls"))


# -- An HTTP/2 client ---------------------------------------------------------


@dataclass
class Stream:
    """
    One request's stream as the client saw it.
    """

    status: int | None = None
    body: bytes = b""
    ended: bool = False
    reset_by_server: ErrorCodes | int | None = None


@implementer(IHandshakeListener)
class Client(Protocol):
    """
    An HTTP/2 client over TLS: the C{h2} library's state machine, fed by and
    writing to the Twisted transport.
    """

    def __init__(self) -> None:
        self.h2 = H2Client(H2Configuration(client_side=True, header_encoding=None))
        self.streams: dict[int, Stream] = {}
        self.handshake: Deferred[bytes | None] = Deferred()
        self.reason: Failure | None = None
        self.their_settings = False
        self.our_settings_acked = False
        self.said_goaway = False

    @property
    def settled(self) -> bool:
        """
        Whether both sides' SETTINGS went through: the server sends nothing
        more on its own after that.
        """
        return self.their_settings and self.our_settings_acked

    @property
    def tls(self) -> ITransport:
        assert self.transport is not None
        return self.transport

    def connectionMade(self) -> None:
        # Written once the handshake is done: the TLS transport buffers it.
        self.h2.initiate_connection()
        self._flush()

    def handshakeCompleted(self) -> None:
        self.handshake.callback(getattr(self.transport, "negotiatedProtocol", None))

    def dataReceived(self, data: bytes) -> None:
        if self.said_goaway:
            # h2 refuses any frame once it said GOAWAY; raising here would
            # make Twisted drop the connection under the server's feet.
            return
        for event in self.h2.receive_data(data):
            if isinstance(event, RemoteSettingsChanged):
                self.their_settings = True
            elif isinstance(event, SettingsAcknowledged):
                self.our_settings_acked = True
            elif isinstance(event, ResponseReceived):
                assert event.stream_id is not None and event.headers is not None
                status = dict(event.headers)
                self.streams[event.stream_id].status = int(status[b":status"])
            elif isinstance(event, DataReceived):
                assert event.stream_id is not None and event.data is not None
                self.streams[event.stream_id].body += event.data
                self.h2.acknowledge_received_data(
                    event.flow_controlled_length or 0, event.stream_id
                )
            elif isinstance(event, StreamEnded):
                assert event.stream_id is not None
                self.streams[event.stream_id].ended = True
            elif isinstance(event, StreamReset):
                assert event.stream_id is not None
                self.streams[event.stream_id].reset_by_server = event.error_code
        self._flush()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.reason = reason

    def _flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.tls.write(data)

    def get(self, path: str, authority: bytes = b"localhost") -> int:
        """
        Send C{GET path} on a new stream; return the stream's id.
        """
        stream_id = self.h2.get_next_available_stream_id()
        self.h2.send_headers(
            stream_id,
            [
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":authority", authority),
                (b":path", path.encode("utf-8")),
            ],
            end_stream=True,
        )
        self.streams[stream_id] = Stream()
        self._flush()
        return stream_id

    def reset(self, stream_id: int) -> None:
        """
        Give up one stream: RST_STREAM with CANCEL, as browsers do.
        """
        self.h2.reset_stream(stream_id, ErrorCodes.CANCEL)
        self._flush()

    def goaway(self) -> None:
        """
        Say GOAWAY (NO_ERROR): this client opens no more streams.
        """
        self.h2.close_connection()
        self.said_goaway = True
        self._flush()


# -- The server ---------------------------------------------------------------


@dataclass
class Server:
    """
    The closedemo site listening with TLS on 127.0.0.1, and what it reported.
    """

    tls: TLSFiles
    delayed: DelayedResource
    port: IListeningPort
    outcomes: list[Outcome] = field(default_factory=list)
    events: list[LogEvent] = field(default_factory=list)
    clients: list[Client] = field(default_factory=list)

    @property
    def ledger(self) -> Ledger:
        return self.delayed.ledger

    async def connect(self, client: Client | None = None) -> Client:
        number = self.port.getHost().port  # type: ignore[attr-defined]
        endpoint = SSL4ClientEndpoint(
            tcp, "127.0.0.1", number, self.tls.client_options()
        )
        client = Client() if client is None else client
        await connectProtocol(endpoint, client)
        self.clients.append(client)
        await wait_for(lambda: client.settled, "the SETTINGS exchange")
        return client

    def answer_due(self, path: bytes) -> Any:
        """
        The scheduled answer to the request for C{path}, if one is pending.
        """
        for call in clock.getDelayedCalls():
            func = getattr(call, "func", None)
            if getattr(func, "__self__", None) is self.delayed:
                args: tuple[IRequest, ...] = getattr(call, "args", ())
                if args and args[0].path == path:
                    return call
        return None

    def answers_due(self) -> list[object]:
        return [
            call
            for call in clock.getDelayedCalls()
            if getattr(getattr(call, "func", None), "__self__", None) is self.delayed
        ]

    def open_connections(self) -> list[object]:
        """
        The server's side of its TCP connections that are still open.
        """
        number = self.port.getHost().port  # type: ignore[attr-defined]
        selectables = {*fdset.getReaders(), *fdset.getWriters()}
        return [
            s
            for s in selectables
            if ITCPTransport.providedBy(s)
            and getattr(cast(ITCPTransport, s).getHost(), "port", None) == number
        ]

    def interruptions(self) -> list[LogEvent]:
        return outcome_events(self.events)

    async def close(self) -> None:
        for client in self.clients:
            if client.reason is None:
                client.tls.loseConnection()
        await wait_for(
            lambda: all(c.reason is not None for c in self.clients),
            "every client to be disconnected",
        )
        await wait_for(
            lambda: not self.open_connections(), "every server connection to close"
        )
        stopped = self.port.stopListening()
        if stopped is not None:
            await stopped


@asynccontextmanager
async def serving(
    tls: TLSFiles,
    delay: float = 5.0,
    ledger: Ledger | None = None,
    **options: Any,
) -> AsyncIterator[Server]:
    """
    Serve the closedemo site over TLS until the block ends, then close every
    connection and stop listening, so that the reactor is left clean.
    """
    caps = ["max_streams", "max_streams_per_client", "max_pending_per_client"]
    limits = Limits(**{n: options.pop(n) for n in caps if n in options})
    ledger = Ledger(limits=limits) if ledger is None else ledger
    site: Site = build_site(clock=clock, ledger=ledger, delay=delay, **options)
    delayed = cast(DemoRoot, cast(HostCheck, site.resource).resource).delayed
    port = await serverFromString(_reactor, tls.listen).listen(site)
    server = Server(tls, delayed, port)
    delayed.ledger.observe(server.outcomes.append)
    observer = cast(ILogObserver, server.events.append)
    globalLogPublisher.addObserver(observer)
    try:
        yield server
    finally:
        globalLogPublisher.removeObserver(observer)
        await server.close()
    assert server.answers_due() == []


# -- Over a real TLS connection -----------------------------------------------


@twisted_test
async def test_a_stream_reset_cancels_that_stream_alone(tls: TLSFiles) -> None:
    async with serving(tls) as server:
        client = await server.connect()
        assert await client.handshake == b"h2"

        a = client.get("/a?delay=0.5")
        b = client.get("/b?delay=5")
        await wait_for(
            lambda: server.answer_due(b"/a") and server.answer_due(b"/b"),
            "both answers to be scheduled",
        )
        answer_a, answer_b = server.answer_due(b"/a"), server.answer_due(b"/b")
        assert server.ledger.pending == 2
        # Both streams are on the one connection the server has.
        assert len(server.open_connections()) == 1

        client.reset(b)
        await wait_for(lambda: server.outcomes, "the reset to be reported")
        # /a was still waiting when /b was reset; it is still waiting now.
        assert answer_a.active()

        [outcome] = server.outcomes
        assert outcome.ending is Ending.STREAM_RESET
        assert outcome.reason == "client reset the stream"
        assert (outcome.method, outcome.path) == ("GET", "/b")
        assert outcome.client.startswith("127.0.0.1:")
        assert outcome.cancelled == 1
        assert not answer_b.active() and answer_b.cancelled
        [event] = server.interruptions()
        text = formatEvent(event)
        assert "GET /b from 127.0.0.1:" in text
        assert "stream" in text

        # The sibling stream, on the same connection, is answered in time.
        await wait_for(lambda: client.streams[a].ended, "/a to be answered")
        assert client.streams[a] == Stream(status=200, body=b"hello", ended=True)
        assert client.streams[b] == Stream()
        assert client.reason is None
        assert len(server.open_connections()) == 1
        # Completed once the client's TCP acknowledged it, a moment later.
        await wait_for(lambda: server.ledger.pending == 0, "/a to be acknowledged")
        assert server.ledger.snapshot() == {
            "pending": 0,
            "completed": 1,
            "interrupted": 1,
            "rejected": 0,
            "server_ended": 0,
        }
        assert server.ledger.interruptions == {Ending.STREAM_RESET: 1}
        assert [o.ending for o in server.outcomes] == [
            Ending.STREAM_RESET,
            Ending.COMPLETED,
        ]


def _close_tls(client: Client) -> None:
    # A TLS close_notify, then the TCP connection is shut down.
    client.tls.loseConnection()


def _abort(client: Client) -> None:
    # No close_notify: the TCP connection is closed at once.
    client.tls.abortConnection()  # type: ignore[attr-defined]


def _goaway(client: Client) -> None:
    client.goaway()


@pytest.mark.parametrize(
    ("leave", "ending"),
    [
        # Over HTTP/2 every stream hears "Producing stopped" whatever ended
        # the connection: a clean close cannot be told from an abort.
        pytest.param(_close_tls, Ending.CLIENT_LOST, id="tls-close"),
        pytest.param(_abort, Ending.CLIENT_LOST, id="abort"),
        pytest.param(_goaway, Ending.CLIENT_CLOSED, id="goaway"),
    ],
)
@twisted_test
async def test_the_connection_going_reports_every_open_stream(
    tls: TLSFiles, leave: Callable[[Client], None], ending: Ending
) -> None:
    async with serving(tls) as server:
        client = await server.connect()
        assert await client.handshake == b"h2"
        client.get("/a?delay=5")
        client.get("/b?delay=5")
        await wait_for(lambda: server.ledger.pending == 2, "both to be pending")

        leave(client)
        await wait_for(lambda: len(server.outcomes) == 2, "both to be reported")
        assert sorted(o.path for o in server.outcomes) == ["/a", "/b"]
        assert {o.ending for o in server.outcomes} == {ending}
        assert all(o.cancelled == 1 for o in server.outcomes)
        assert server.answers_due() == []
        assert len(server.interruptions()) == 2
        assert server.ledger.snapshot() == {
            "pending": 0,
            "completed": 0,
            "interrupted": 2,
            "rejected": 0,
            "server_ended": 0,
        }
        # After GOAWAY Twisted calls loseConnection(), but the TLS transport
        # waits for its producer, the H2Connection, which never unregisters:
        # the client is the one to close (serving() does it).


# -- One client, one connection: limits, Host, log lines ----------------------


@twisted_test
async def test_one_connection_gets_its_share_of_pending_answers(tls: TLSFiles) -> None:
    # The client is the connection's peer address, however many streams.
    async with serving(tls, max_pending_per_client=3) as server:
        client = await server.connect()
        held = [client.get(f"/held/{n}?delay=5") for n in range(3)]
        await wait_for(lambda: server.ledger.pending == 3, "3 pending answers")
        refused = client.get("/fourth?delay=5")
        await wait_for(lambda: client.streams[refused].ended, "the 429")
        assert client.streams[refused].status == 429
        assert client.streams[refused].body == (
            b"too many pending requests from this client; retry in 1 s\n"
        )
        assert server.ledger.rejected == 1
        # A reset gives its place back.
        client.reset(held[0])
        await wait_for(lambda: server.ledger.pending == 2, "the reset")
        again = client.get("/again?delay=0")
        await wait_for(lambda: client.streams[again].ended, "the answer")
        assert client.streams[again].status == 200


@twisted_test
async def test_authority_is_the_host_checked(tls: TLSFiles) -> None:
    async with serving(tls) as server:
        client = await server.connect()
        refused = client.get("/stats", authority=b"attacker.example")
        allowed = [
            client.get("/stats", authority=name)
            for name in (b"localhost", b"b3.localhost:8443", b"127.0.0.1:8443")
        ]
        await wait_for(
            lambda: all(client.streams[s].ended for s in [refused, *allowed]),
            "every answer",
        )
        assert client.streams[refused].status == 421
        assert client.streams[refused].body == (
            b"host attacker.example is not served here\n"
        )
        assert [client.streams[s].status for s in allowed] == [200] * 3


@twisted_test
async def test_a_forged_path_cannot_pass_for_other_fields(tls: TLSFiles) -> None:
    # HTTP/2 carries a path with spaces as it is.
    forged = "/admin from 203.0.113.9:4444 after 0.01 s (client closed the connection)"
    async with serving(tls) as server:
        client = await server.connect()
        stream = client.get(forged)
        await wait_for(lambda: server.ledger.pending == 1, "the request to be pending")
        client.reset(stream)
        await wait_for(lambda: server.interruptions(), "the reset to be reported")
        [event] = server.interruptions()
        line = formatEvent(event)
        escaped = forged.replace(" ", "\\x20")
        assert line.startswith(f"Connection interrupted: GET {escaped} from 127.0.0.1:")
        assert line.endswith("(client reset the stream)")
        assert line.count(" from ") == 1
        [outcome] = server.outcomes
        assert outcome.path == forged


# -- A client that stops reading ----------------------------------------------


class StingyClient(Client):
    """
    A client whose flow-control window for each stream is 0: the server may
    send headers, never a byte of body, until the client opens the window.
    """

    def connectionMade(self) -> None:
        self.h2.local_settings = Settings(
            client=True, initial_values={SettingCodes.INITIAL_WINDOW_SIZE: 0}
        )
        super().connectionMade()

    def open_window(self, stream_id: int, size: int) -> None:
        self.h2.increment_flow_control_window(size, stream_id)
        self._flush()


async def _stuck_answer(server: Server) -> tuple[StingyClient, int]:
    """
    A request answered (its timer fired, C{finish()} called) whose body and
    end are held back by the client's flow control.
    """
    client = StingyClient()
    await server.connect(client)
    assert await client.handshake == b"h2"
    stream_id = client.get("/a?delay=0.1")
    await wait_for(lambda: client.streams[stream_id].status == 200, "the headers")
    await wait_for(lambda: not server.answers_due(), "the answer to be given")
    return client, stream_id


@twisted_test
async def test_an_answer_completes_when_its_end_goes_out(tls: TLSFiles) -> None:
    async with serving(tls) as server:
        client, stream_id = await _stuck_answer(server)
        # finish() was called; the client has had the headers only.
        assert server.ledger.pending == 1
        assert server.ledger.completed == 0
        assert server.outcomes == []
        assert client.streams[stream_id].body == b""

        client.open_window(stream_id, 100)
        await wait_for(lambda: client.streams[stream_id].ended, "the end")
        assert client.streams[stream_id].body == b"hello"
        await wait_for(lambda: server.outcomes, "the outcome")
        [outcome] = server.outcomes
        assert outcome.ending is Ending.COMPLETED
        assert server.ledger.snapshot()["completed"] == 1


@twisted_test
async def test_a_client_leaving_before_the_end_went_out_is_reported(
    tls: TLSFiles,
) -> None:
    async with serving(tls) as server:
        client, _ = await _stuck_answer(server)
        _abort(client)
        await wait_for(lambda: server.outcomes, "the outcome")
        [outcome] = server.outcomes
        assert (outcome.path, outcome.ending) == ("/a", Ending.CLIENT_LOST)
        assert server.ledger.snapshot()["completed"] == 0
        assert server.ledger.interruptions == {Ending.CLIENT_LOST: 1}


@twisted_test
async def test_a_stream_stuck_on_flow_control_is_reset_as_stopped_reading(
    tls: TLSFiles,
) -> None:
    async with serving(tls, stall_timeout=0.5) as server:
        client, stream_id = await _stuck_answer(server)
        stuck_since = clock.seconds()
        await wait_for(lambda: server.outcomes, "the stall to be reported")
        assert clock.seconds() - stuck_since >= 0.4
        [outcome] = server.outcomes
        assert outcome.ending is Ending.CLIENT_STOPPED_READING
        assert outcome.reason == "client stopped reading"
        # The stream is reset; the connection goes on.
        await wait_for(
            lambda: client.streams[stream_id].reset_by_server is not None,
            "the client to hear the reset",
        )
        assert client.reason is None
        assert client.streams[stream_id].body == b""
        assert server.ledger.snapshot() == {
            "pending": 0,
            "completed": 0,
            "interrupted": 1,
            "rejected": 0,
            "server_ended": 0,
        }
        other = client.get("/b?delay=0")
        client.open_window(other, 100)
        await wait_for(lambda: client.streams[other].ended, "another answer")
        assert client.streams[other].body == b"hello"
