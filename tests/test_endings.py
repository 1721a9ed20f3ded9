"""
The rules from evidence to an L{Ending} (L{twisted_close._endings}), as
tables: no sockets, no reactor.  What the evidence is read from (Twisted's
failures and objects) is pinned in C{tests/test_twisted_*.py}; that the
watch gathers it truly, over real connections, in the system tests.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from twisted_close import Ending, Rejection, classify
from twisted_close._endings import (
    PEER_RULES,
    RULES,
    Evidence,
    Loss,
    PeerSign,
    decide,
    decide_loss,
    peer_ending,
)
from twisted_close._twisted.failures import PeerTimedOut

# One row per rule, in the table's order: evidence that reaches that rule
# (and no earlier one), and the ending it gives.
ROWS: list[tuple[str, Evidence, Ending]] = [
    ("lost before it was watched", Evidence(already_gone=True), Ending.ALREADY_GONE),
    (
        "the server ended it first",
        Evidence(loss=Loss.RESET, server=Ending.SHUTDOWN, peer=Ending.CLIENT_RESET),
        Ending.SHUTDOWN,
    ),
    (
        "answered, and its client was found gone or half-closed meanwhile",
        Evidence(finished=True, peer=Ending.CLIENT_HALF_CLOSED),
        Ending.CLIENT_HALF_CLOSED,
    ),
    (
        "handed over, and the reactor dropped it as it stopped",
        Evidence(finished=True, unacknowledged=10, shutdown=True),
        Ending.SHUTDOWN,
    ),
    (
        "handed over, but the connection ended before the client's TCP "
        "acknowledged all of it",
        Evidence(finished=True, unacknowledged=10),
        Ending.ANSWER_NOT_ACKNOWLEDGED,
    ),
    ("answered in full", Evidence(finished=True), Ending.COMPLETED),
    (
        "a clean close the server had begun (HTTP/1.x)",
        Evidence(loss=Loss.DONE, closing=True, peer=Ending.CLIENT_RESET),
        Ending.SERVER_CLOSED,
    ),
    (
        "an HTTP/2 connection the server had begun to close",
        Evidence(loss=Loss.STOPPED, stream=True, closing=True),
        Ending.SERVER_CLOSED,
    ),
    (
        "found gone by the connection's watch, which then aborted it",
        Evidence(loss=Loss.ABORTED, peer=Ending.CLIENT_RESET),
        Ending.CLIENT_RESET,
    ),
    (
        "an HTTP/2 connection whose peer stopped responding",
        Evidence(loss=Loss.STOPPED, stream=True, peer_timed_out=True, shutdown=True),
        Ending.PEER_TIMED_OUT,
    ),
    (
        "dropped by the reactor as it stopped (no graceful drain)",
        Evidence(loss=Loss.RESET, shutdown=True),
        Ending.SHUTDOWN,
    ),
    ("a clean close", Evidence(loss=Loss.DONE), Ending.CLIENT_CLOSED),
    (
        "the kernel gave up on the peer",
        Evidence(loss=Loss.PEER_TIMEOUT),
        Ending.PEER_TIMED_OUT,
    ),
    (
        "aborted by the server",
        Evidence(loss=Loss.ABORTED, shutdown=True),
        Ending.SERVER_ABORTED,
    ),
    (
        "the client reset its stream",
        Evidence(loss=Loss.STREAM_RESET, stream=True),
        Ending.STREAM_RESET,
    ),
    ("the client sent GOAWAY", Evidence(loss=Loss.GOAWAY), Ending.CLIENT_CLOSED),
    (
        "the rapid-reset defence",
        Evidence(loss=Loss.RAPID_RESET, shutdown=True),
        Ending.SERVER_ABORTED,
    ),
    ("an HTTP/2 connection went", Evidence(loss=Loss.STOPPED), Ending.CLIENT_LOST),
    (
        "TLS lost, TCP closed cleanly: no close_notify",
        Evidence(loss=Loss.RESET, tls=True, tcp=Loss.DONE),
        Ending.CLIENT_CLOSED_NO_TLS_CLOSE,
    ),
    (
        "TLS lost, the kernel gave up on the peer",
        Evidence(loss=Loss.RESET, tls=True, tcp=Loss.PEER_TIMEOUT),
        Ending.PEER_TIMED_OUT,
    ),
    (
        "TLS lost, TCP reset",
        Evidence(loss=Loss.RESET, tls=True, tcp=Loss.RESET),
        Ending.CLIENT_RESET,
    ),
    (
        "TLS lost, TCP's reason unknown",
        Evidence(loss=Loss.RESET, tls=True),
        Ending.CLIENT_LOST,
    ),
    ("a reset", Evidence(loss=Loss.RESET), Ending.CLIENT_RESET),
    ("anything else", Evidence(loss=Loss.OTHER), Ending.CLIENT_LOST),
]


def _first_rule(evidence: Evidence) -> str:
    return next(rule.why for rule in RULES if rule.holds(evidence))


_SERVER_ENDINGS = [e for e in Ending if e.by_server]

evidence = st.builds(
    Evidence,
    finished=st.booleans(),
    loss=st.none() | st.sampled_from(Loss),
    server=st.none() | st.sampled_from(_SERVER_ENDINGS),
    peer=st.none()
    | st.sampled_from(
        [
            Ending.CLIENT_RESET,
            Ending.CLIENT_CLOSED,
            Ending.CLIENT_HALF_CLOSED,
            Ending.CLIENT_STOPPED_READING,
        ]
    ),
    already_gone=st.booleans(),
    stream=st.booleans(),
    closing=st.booleans(),
    peer_timed_out=st.booleans(),
    shutdown=st.booleans(),
    tls=st.booleans(),
    tcp=st.none() | st.sampled_from(Loss),
    unacknowledged=st.sampled_from([0, 0, 1, 60000]),
)


class RulesTableTests(SynchronousTestCase):
    def test_each_rule_in_order(self) -> None:
        # The rows above follow the table, one each: a rule added, removed
        # or moved without its row fails here.
        self.assertEqual([why for why, _, _ in ROWS], [rule.why for rule in RULES])
        for why, given_, ending in ROWS:
            self.assertEqual(_first_rule(given_), why)
            self.assertIs(decide(given_), ending, why)

    def test_every_ending_is_reached(self) -> None:
        # A rule's own ending, or a server's ending passed on, or one the
        # connection's watch hands on: no ending that nothing can give.
        reached = {rule.ending for rule in RULES if rule.ending is not None}
        reached |= set(_SERVER_ENDINGS)
        reached |= {ending for _, _, ending in PEER_RULES if ending is not None}
        self.assertEqual(reached, set(Ending))

    @given(evidence)
    def test_every_evidence_has_one_ending(self, given_: Evidence) -> None:
        ending = decide(given_)
        self.assertIsInstance(ending, Ending)
        # What the server chose first is never overruled.
        if given_.server is not None and not given_.already_gone:
            self.assertIs(ending, given_.server)
        # A request that lost nothing and was not cut by the server completed
        # unless its client was found gone.
        if (
            given_.finished
            and given_.loss is None
            and given_.server is None
            and given_.peer is None
            and not given_.already_gone
            and not given_.unacknowledged
        ):
            self.assertIs(ending, Ending.COMPLETED)
        # Never a completion while something was lost or not acknowledged.
        if given_.loss is not None or given_.already_gone or given_.unacknowledged:
            self.assertIsNot(ending, Ending.COMPLETED)

    @given(evidence)
    def test_a_loss_is_decided_as_by_its_evidence(self, given_: Evidence) -> None:
        # decide_loss() remembers by the facts a loss sets, not by Evidence:
        # asked twice (the second from its memory), the same as decide().
        lost = replace(given_, already_gone=False, unacknowledged=0)
        facts = (lost.finished, lost.loss, lost.server, lost.peer, lost.stream)
        more = (lost.closing, lost.peer_timed_out, lost.shutdown, lost.tls, lost.tcp)
        for _ in range(2):
            self.assertIs(decide_loss(*facts, *more), decide(lost))


class PeerRulesTests(SynchronousTestCase):
    def test_what_the_connection_watch_saw(self) -> None:
        self.assertIs(peer_ending(PeerSign.TCP_RESET), Ending.CLIENT_RESET)
        self.assertIs(peer_ending(PeerSign.TCP_FIN), Ending.CLIENT_CLOSED)
        self.assertIs(peer_ending(PeerSign.HALF_CLOSED), Ending.CLIENT_HALF_CLOSED)
        self.assertIs(
            peer_ending(PeerSign.STOPPED_READING), Ending.CLIENT_STOPPED_READING
        )

    def test_a_fin_is_no_leaving_where_half_closes_are_answered(self) -> None:
        self.assertIsNone(peer_ending(PeerSign.TCP_FIN, answers_half_close=True))
        self.assertIs(
            peer_ending(PeerSign.TCP_RESET, answers_half_close=True),
            Ending.CLIENT_RESET,
        )


class ClassifyTests(SynchronousTestCase):
    def test_a_failure_alone(self) -> None:
        self.assertIs(classify(Failure(ConnectionDone())), Ending.CLIENT_CLOSED)
        self.assertIs(classify(Failure(ConnectionLost())), Ending.CLIENT_RESET)
        self.assertIs(classify(Failure(ConnectionAborted())), Ending.SERVER_ABORTED)
        self.assertIs(classify(Failure(PeerTimedOut())), Ending.PEER_TIMED_OUT)
        self.assertIs(classify(Failure(ValueError())), Ending.CLIENT_LOST)


class ReadmeTests(SynchronousTestCase):
    def test_the_readme_table_is_the_rules_table(self) -> None:
        # Every ending the README explains is one the rules can give, and
        # every one they can give is explained.
        readme = Path(__file__).resolve().parent.parent / "README.md"
        text = readme.read_text(encoding="utf-8")
        section = text.split("\n## What each ending means\n", 1)[1].split("\n## ")[0]
        listed = {
            line.split("`")[1]
            for line in section.splitlines()
            if line.startswith("| `")
        }
        reached = {str(rule.ending.value) for rule in RULES if rule.ending}
        reached |= {str(e.value) for e in _SERVER_ENDINGS}
        reached |= {str(e.value) for _, _, e in PEER_RULES if e is not None}
        self.assertEqual(listed, reached)


class HashTests(SynchronousTestCase):
    def test_the_facts_and_endings_hash_in_c(self) -> None:
        # The ledger's counters are keyed by them, several lookups per
        # interruption: Enum's own __hash__ is a Python call each.
        for kind in (Ending, Rejection, Loss, PeerSign):
            self.assertIs(kind.__hash__, object.__hash__)
            members = list(kind)
            self.assertEqual(len({m: 1 for m in members}), len(members))
            self.assertEqual(members, [kind(m.value) for m in members])
