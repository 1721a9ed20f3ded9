"""
The Twisted behaviours that L{twisted_close._twisted.failures} relies on
(the failures Twisted gives for a lost connection), each pinned by a test
that fails if a Twisted upgrade changes it.
"""

from __future__ import annotations

import pytest
from h2.errors import ErrorCodes
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from twisted_close import Ending, classify
from twisted_close._endings import Loss
from twisted_close._twisted.failures import PeerTimedOut, loss_of

from .twisted_pins import (
    _h2_in_memory,
)


class ClassifyTests(SynchronousTestCase):
    def test_endings(self) -> None:
        from twisted.internet.error import (
            ConnectionDone,
            ConnectionLost,
        )

        self.assertIs(classify(Failure(ConnectionDone())), Ending.CLIENT_CLOSED)
        self.assertIs(classify(Failure(ConnectionLost())), Ending.CLIENT_RESET)
        self.assertIs(classify(Failure(ConnectionAborted())), Ending.SERVER_ABORTED)
        self.assertIs(classify(Failure(ValueError())), Ending.CLIENT_LOST)


def test_classify_rst_stream_as_twisted_reports_it() -> None:
    server, client, watching = _h2_in_memory()
    assert watching.failures == {}

    client.reset_stream(3, ErrorCodes.CANCEL)
    server.dataReceived(client.data_to_send())
    [(path, reason)] = watching.failures.items()
    assert path == b"/b"
    assert isinstance(reason.value, ConnectionLost)
    assert type(reason.value) is ConnectionLost
    assert reason.value.args[0].startswith("Stream reset with code ")
    assert classify(reason) is Ending.STREAM_RESET

    # The transport going: TCP stops its producer (the H2Connection) before
    # it calls connectionLost; the streams left hear of the first only.
    server.stopProducing()
    server.connectionLost(Failure(ConnectionDone()))
    lost = watching.failures[b"/a"]
    assert isinstance(lost.value, ConnectionLost)
    assert lost.value.args == ("Producing stopped",)
    assert classify(lost) is Ending.CLIENT_LOST


def test_classify_goaway_as_twisted_reports_it() -> None:
    server, client, watching = _h2_in_memory()
    client.close_connection()
    server.dataReceived(client.data_to_send())
    assert set(watching.failures) == {b"/a", b"/b"}
    for reason in watching.failures.values():
        assert isinstance(reason.value, ConnectionLost)
        assert reason.value.args == ("Remote peer sent GOAWAY",)
        assert classify(reason) is Ending.CLIENT_CLOSED


@pytest.mark.parametrize(
    ("failure", "ending"),
    [
        # Python 3.10 formats the IntEnum by name, 3.11 on by number; an
        # unknown code is a plain int.
        (
            ConnectionLost("Stream reset with code ErrorCodes.CANCEL"),
            Ending.STREAM_RESET,
        ),
        (ConnectionLost("Stream reset with code 8"), Ending.STREAM_RESET),
        (ConnectionLost("Stream reset with code 4919"), Ending.STREAM_RESET),
        (ConnectionLost("Too many stream resets"), Ending.SERVER_ABORTED),
        # HTTP/1.1 is as before.
        (ConnectionLost(), Ending.CLIENT_RESET),
        (ConnectionLost("Connection reset by peer."), Ending.CLIENT_RESET),
        (ConnectionDone(), Ending.CLIENT_CLOSED),
    ],
)
def test_classify_by_twisted_message(failure: Exception, ending: Ending) -> None:
    assert classify(Failure(failure)) is ending


class LossTests(SynchronousTestCase):
    def test_what_each_failure_says(self) -> None:
        # The exception's kind, tested most specific first: PeerTimedOut and
        # ConnectionAborted both subclass ConnectionLost.
        self.assertIs(loss_of(Failure(ConnectionDone())), Loss.DONE)
        self.assertIs(loss_of(Failure(PeerTimedOut())), Loss.PEER_TIMEOUT)
        self.assertIsInstance(PeerTimedOut(), ConnectionLost)
        self.assertIs(loss_of(Failure(ConnectionAborted())), Loss.ABORTED)
        self.assertIs(loss_of(Failure(ConnectionLost())), Loss.RESET)
        self.assertIs(loss_of(Failure(ValueError())), Loss.OTHER)
        self.assertIsNone(loss_of(None))
