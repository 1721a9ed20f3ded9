"""
Cancellation that crosses services, through two real servers on loopback:
B is C{twistd closedemo}; A is C{examples/calling_a_service.py}, an
L{AsyncResource} that passes each GET on to B with treq or aiohttp.  A
client leaves A while A waits on B: A's call is cancelled, its kept-alive
connection to B closed, and B reports its own C{Connection interrupted}.

treq runs A on the suite's reactor; aiohttp runs it on the asyncio reactor
whatever the suite's.  B runs on the suite's reactor (see
L{tests.twistd_process}).  Every wait has a deadline; both processes are
always killed at the end.
"""

from __future__ import annotations

import re
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionLost
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import ResponseDone, ResponseFailed, ResponseNeverReceived

from twisted_close import is_cancellation, read_body

from ..twistd_process import (
    LISTEN,
    Twistd,
    command,
    http_get,
    started_in,
    stats,
    twistd_reactor,
    wait_until,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "calling_a_service.py"
INTERRUPTED = r"Connection interrupted: GET {path} from 127\.0\.0\.1:(\d+) after"


def connected_to(port: int) -> set[int]:
    """
    The local ports of the established loopback TCP connections to C{port}.
    """
    ports = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, remote, state = line.split()[1:4]
        if state == "01" and int(remote.rsplit(":", 1)[1], 16) == port:
            ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Callable[[list[str]], Twistd]]:
    with started_in(tmp_path) as start:
        yield lambda argv: start(argv=argv)


@pytest.mark.skipif(
    not Path("/proc/net/tcp").is_file(),
    reason="reads the kernel's TCP table from /proc/net/tcp (Linux)",
)
@pytest.mark.parametrize("client", ["treq", "aiohttp"])
@pytest.mark.parametrize(
    ("path", "reading"),
    [("/slow?delay=10", False), ("/events", True)],
    ids=["waiting-for-the-answer", "reading-the-body"],
)
def test_a_client_leaving_a_cancels_its_call_to_b(
    processes: Callable[[list[str]], Twistd], client: str, path: str, reading: bool
) -> None:
    b = processes(command(*LISTEN, "--delay", "10", "--tick", "0.05"))
    b_port = b.port()
    reactor = ["--reactor", "asyncio"] if twistd_reactor() == "asyncio" else []
    a = processes(
        [
            sys.executable,
            str(EXAMPLE),
            f"http://127.0.0.1:{b_port}",
            "--client",
            client,
            "--listen",
            "tcp:0:interface=127.0.0.1",
            *reactor,
        ]
    )
    found = a.wait_for_line(r"relay listening on 127\.0\.0\.1:(\d+)", timeout=30)
    a_port = int(found.group(1))

    # A first call leaves A a kept-alive connection to B: the one to cancel.
    assert http_get(a_port, "/warm?delay=0") == (200, b"hello")
    wait_until(lambda: len(connected_to(b_port)) == 1, "A's connection to B")
    [kept] = connected_to(b_port)

    with socket.create_connection(("127.0.0.1", a_port), timeout=10) as leaving:
        leaving.sendall(f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
        wait_until(lambda: stats(b_port)["pending"] == 1, "A to wait on B")
        assert connected_to(b_port) == {kept}  # the kept connection is reused
        if reading:
            time.sleep(0.3)  # A reads the stream a while (events every 0.05 s)
        left_at = time.monotonic()
    # The client has closed its connection to A.

    interrupted = INTERRUPTED.format(path=re.escape(path.split("?")[0]))
    found = b.wait_for_line(interrupted + r".*\)$")
    reported_at = b.arrival(found)
    assert int(found.group(1)) == kept  # B's client was A's kept connection
    assert reported_at - left_at < 0.1
    if reading:
        sent = re.search(r"; (\d+) events? sent\)$", found.string)
        assert sent is not None and int(sent.group(1)) >= 2, found.string
    a.wait_for_line(
        interrupted + r" [\d.]+ s while waiting \(client closed the connection\)"
    )
    wait_until(lambda: kept not in connected_to(b_port), "A's connection to B closed")
    assert stats(b_port) == {
        "pending": 0,
        "completed": 1,
        "interrupted": 1,
        "rejected": 0,
        "server_ended": 0,
    }
    # The cancellation was A's plan, not a failure of A.
    assert "Traceback" not in a.output
    assert "failed in render_GET" not in a.output


class IsCancellationTests(SynchronousTestCase):
    def test_a_cancelled_http_client_request_is_a_cancellation(self) -> None:
        wrapped = ResponseNeverReceived([Failure(CancelledError())])
        self.assertTrue(is_cancellation(Failure(wrapped)))
        self.assertTrue(is_cancellation(Failure(CancelledError())))

    def test_asyncio_cancellation_is_one(self) -> None:
        import asyncio

        self.assertTrue(is_cancellation(Failure(asyncio.CancelledError())))

    def test_other_failures_are_not(self) -> None:
        lost = ResponseFailed([Failure(ConnectionLost())])
        self.assertFalse(is_cancellation(Failure(lost)))
        self.assertFalse(is_cancellation(Failure(ValueError("boom"))))


class _Transport:
    """
    Stands for the HTTP client's TransportProxyProducer (no abortConnection).
    """

    def __init__(self) -> None:
        self.stopped = 0

    def stopProducing(self) -> None:
        self.stopped += 1


class _Aborting(_Transport):
    def __init__(self) -> None:
        super().__init__()
        self.aborted = 0

    def abortConnection(self) -> None:
        self.aborted += 1


class _Response:
    def __init__(self, transport: _Transport) -> None:
        self.transport = transport
        self.protocol: Protocol | None = None

    def deliverBody(self, protocol: Protocol) -> None:
        self.protocol = protocol
        protocol.makeConnection(self.transport)


class ReadBodyTests(SynchronousTestCase):
    def read(self, transport: _Transport) -> tuple[_Response, Deferred[bytes]]:
        response = _Response(transport)
        return response, read_body(response)  # type: ignore[arg-type]

    def test_the_body_arrives_whole(self) -> None:
        response, body = self.read(_Transport())
        assert response.protocol is not None
        response.protocol.dataReceived(b"hel")
        response.protocol.dataReceived(b"lo")
        self.assertNoResult(body)
        response.protocol.connectionLost(Failure(ResponseDone()))
        self.assertEqual(self.successResultOf(body), b"hello")

    def test_a_body_cut_short_is_an_error(self) -> None:
        response, body = self.read(_Transport())
        assert response.protocol is not None
        response.protocol.connectionLost(Failure(ResponseFailed([])))
        self.failureResultOf(body, ResponseFailed)

    def test_cancelling_stops_the_connection(self) -> None:
        transport = _Transport()
        response, body = self.read(transport)
        body.cancel()
        self.assertEqual(transport.stopped, 1)
        self.failureResultOf(body, CancelledError)
        # The connection going later changes nothing.
        assert response.protocol is not None
        response.protocol.connectionLost(Failure(ResponseFailed([])))

    def test_cancelling_aborts_a_transport_that_can(self) -> None:
        transport = _Aborting()
        _, body = self.read(transport)
        body.cancel()
        self.assertEqual((transport.aborted, transport.stopped), (1, 0))
        self.failureResultOf(body, CancelledError)
