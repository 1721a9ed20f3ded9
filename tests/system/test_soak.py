"""
A soak test through the real C{twistd closedemo}: a few thousand requests
with random delays, a third of whose clients give up (a clean close or a
reset), and a SIGTERM in the middle while requests keep coming.

Every request is classified by what its client saw: completed (200),
interrupted (its client gave up), answered 503 (by the drain, or refused at
once because the server is stopping: LATE requests are sent during the
drain on connections opened before it) or refused (no connection, or one
that ended without a byte, after the SIGTERM).  The server's own records
must agree with the clients: its JSON log (outcome events, rate-limited
summaries, the drain summary) and /stats asked before the SIGTERM and
during the drain; request by request where the log names the request, in
total where it only counts.

The client runs on asyncio in the test process (no Twisted reactor), with a
seeded plan; set C{SOAK_SEED} to replay another one.  Races that would make
the counts depend on timing are designed out:

  - a client that gives up does so at least L{ABORT_MARGIN} seconds before
    its answer is due, and at least L{MIN_ABORT_WAIT} after sending;
  - a client that does not give up waits for its answer, however long;
  - no client gives up between just before the SIGTERM and the moment the
    log shows the listener closed (so that the drain's "interrupted by
    clients" is exactly the clients that gave up after it began), nor
    around the moment the grace runs out (when pending answers become
    503s).  A client whose moment falls there waits for its answer instead.

Every wait has a deadline; the subprocess is always killed at the end.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import re
import signal
import socket
import struct
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from twisted.logger import eventFromJSON, formatEvent

from ..twistd_process import command, environment

SEED = int(os.environ.get("SOAK_SEED", "20261125"))
REQUESTS = 3000
LATE = 40  # of which sent on connections opened before the stop, after it
SEND_SECONDS = 5.0  # the plan spreads the requests over this long
CONCURRENCY = 600  # requests open at once, at most
MAX_DELAY = 3.0
ABORT_SHARE = 0.3
MIN_ABORT_WAIT = 0.3
ABORT_MARGIN = 0.5  # a client gives up this long before its answer is due
GRACE = 2.0
QUIET_BEFORE_SIGTERM = 0.25  # no client gives up from this long before ...
QUIET_AFTER_DRAIN = 0.05  # ... until this long after the drain shows
QUIET_AROUND_GRACE = 0.3  # nor this close to the end of the grace
EXIT_BOUND = GRACE + 4.0  # seconds from SIGTERM to the exit, at most
PATIENCE = 20.0  # a waiting client's answer must come within this
HOST = "127.0.0.1"
BODY_200 = b"hello"
BODY_503_DRAIN = b"server shutting down; retry in 5 s\n"
BODY_503_REJECTED = b"server shutting down; retry in 1 s\n"

SOAK_PATH = re.compile(r"^/soak/(\d+)$")
# Outcome endings that a client causes, as the JSON log names them.
CLIENT_ENDINGS = {"close": "client_closed", "reset": "client_reset"}
BY_SERVER = {"shutdown", "server_closed", "server_aborted"}


# -- the server ------------------------------------------------------------


class Server:
    """
    C{twistd closedemo} with the JSON logger, its output read by a thread:
    events decoded as they come, anything else kept as stray lines.
    """

    def __init__(self, cwd: Path, *options: str) -> None:
        self.process = subprocess.Popen(
            command(
                *options,
                logging=(
                    "--logfile=-",
                    "--logger",
                    "twisted_close.logs.json_observer",
                ),
            ),
            cwd=cwd,
            env=environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.raw: list[str] = []
        self.events: list[dict[str, Any]] = []
        self.stray: list[str] = []
        self.port_closed = threading.Event()
        self._port: int | None = None
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            line = line.rstrip("\n")
            event: dict[str, Any] | None = None
            if line.startswith("\x1e"):
                try:
                    event = dict(eventFromJSON(line[1:]))
                except ValueError:
                    event = None
            with self._changed:
                self.raw.append(line)
                if event is None:
                    self.stray.append(line)
                else:
                    self.events.append(event)
                    if self._port is None and str(
                        event.get("log_format", "")
                    ).startswith("closedemo listening on"):
                        self._port = int(str(event["address"]).rsplit(":", 1)[1])
                if self._port is not None and f"Port {self._port} Closed" in line:
                    self.port_closed.set()
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "\n".join(self.raw)

    def port(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._port is None:
                left = deadline - time.monotonic()
                if left <= 0 or not self._reader.is_alive():
                    raise AssertionError(
                        f"closedemo did not say where it listens within {timeout} s:"
                        f"\n{chr(10).join(self.raw)}"
                    )
                self._changed.wait(left)
            return self._port

    def finish(self) -> None:
        """
        Kill it if it still runs, and read the rest of its output.
        """
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        self._reader.join(timeout=10)
        assert self.process.stdout is not None
        self.process.stdout.close()


# -- the plan and what the clients saw -------------------------------------


@dataclass(frozen=True)
class Plan:
    index: int
    at: float  # seconds after the start to send it, at the earliest
    delay: float  # the ?delay= it asks for
    abort: str | None  # "close" or "reset" to give up, None to wait
    wait: float  # seconds after sending to give up, if it does
    late: bool = False  # sent during the drain on a connection from before

    @property
    def request(self) -> bytes:
        return (
            f"GET /soak/{self.index}?delay={self.delay:.3f} HTTP/1.1\r\n"
            f"Host: {HOST}\r\n\r\n"
        ).encode("ascii")


def make_plan(seed: int) -> list[Plan]:
    rng = random.Random(seed)
    plans = []
    scheduled = REQUESTS - LATE
    for i in range(REQUESTS):
        at = i * SEND_SECONDS / scheduled
        if i >= scheduled:
            delay = round(rng.uniform(0.0, MAX_DELAY), 3)
            plans.append(Plan(i, at, delay, None, 0.0, late=True))
        elif rng.random() < ABORT_SHARE:
            kind = rng.choice(("close", "reset"))
            delay = round(
                rng.uniform(MIN_ABORT_WAIT + ABORT_MARGIN + 0.1, MAX_DELAY), 3
            )
            wait = rng.uniform(MIN_ABORT_WAIT, delay - ABORT_MARGIN)
            plans.append(Plan(i, at, delay, kind, wait))
        else:
            delay = round(rng.uniform(0.0, MAX_DELAY), 3)
            plans.append(Plan(i, at, delay, None, 0.0))
    return plans


COMPLETED = "completed"
INTERRUPTED = "interrupted"
DRAINED_503 = "answered-503 (drain)"
REJECTED_503 = "answered-503 (rejected)"
REFUSED = "refused"
UNEXPECTED = "unexpected"


@dataclass
class Result:
    plan: Plan
    kind: str
    detail: str = ""
    started: float = 0.0  # monotonic: the slot was had
    sent: float | None = None  # monotonic: the request was written
    ended: float = 0.0  # monotonic: the answer, the abort or the failure
    skipped_abort: bool = False  # meant to give up, but it fell in a quiet time

    def describe(self) -> str:
        p = self.plan
        plan = f"abort={p.abort} wait={p.wait:.3f}" if p.abort else "waits"
        sent = "never sent" if self.sent is None else f"sent +{self.sent:.3f}"
        return (
            f"#{p.index} delay={p.delay:.3f} {plan}: {self.kind} ({self.detail}); "
            f"{sent}, ended +{self.ended:.3f}"
        )


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    closed_after: str  # what followed the body, for a 503: "eof" expected


class NoAnswer(Exception):
    def __init__(self, how: str, received: int) -> None:
        super().__init__(how, received)
        self.how = how
        self.received = received


async def read_response(reader: asyncio.StreamReader, got: bytearray) -> Response:
    """
    Read one answer; C{got} shows how many bytes have come so far.
    """

    async def more() -> None:
        try:
            chunk = await reader.read(65536)
        except ConnectionResetError:
            raise NoAnswer("reset", len(got)) from None
        if not chunk:
            raise NoAnswer("eof", len(got))
        got.extend(chunk)

    while b"\r\n\r\n" not in got:
        await more()
    head, _, _ = bytes(got).partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    version, status, *_ = status_line.split(" ", 2)
    if version != "HTTP/1.1" or not status.isdigit():
        raise NoAnswer(f"bad status line {status_line!r}", len(got))
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(got) < len(head) + 4 + length:
        await more()
    body = bytes(got[len(head) + 4 :])
    closed_after = ""
    if int(status) == 503:
        # Connection: close: the server must close once the answer is out.
        try:
            rest = await asyncio.wait_for(reader.read(65536), 5.0)
            closed_after = "eof" if rest == b"" else f"more bytes {rest!r}"
        except ConnectionResetError:
            closed_after = "reset"
        except asyncio.TimeoutError:
            closed_after = "still open after 5 s"
    return Response(int(status), headers, body, closed_after)


@dataclass
class Clock:
    """
    What the clients share: the start, the SIGTERM and the quiet times.
    Seconds are monotonic, relative to C{start}.
    """

    start: float = field(default_factory=time.monotonic)
    quiet_from: float | None = None
    sigterm: float | None = None
    drain_seen: float | None = None
    exited: float | None = None

    def now(self) -> float:
        return time.monotonic() - self.start

    def may_abort(self, now: float) -> bool:
        """
        Whether a client may give up now without a race against the drain.
        """
        if self.quiet_from is not None and now >= self.quiet_from:
            if self.drain_seen is None or now < self.drain_seen + QUIET_AFTER_DRAIN:
                return False
        if self.sigterm is not None:
            # The grace runs out between these: pending answers become 503s.
            low = self.sigterm + GRACE - QUIET_AROUND_GRACE
            high = (self.drain_seen or math.inf) + GRACE + QUIET_AROUND_GRACE
            if low <= now <= high:
                return False
        return True


def classify(result: Result, response: Response) -> None:
    status, headers, body = response.status, response.headers, response.body
    if status == 200 and body == BODY_200:
        result.kind = COMPLETED
        answered = result.ended - (result.sent or 0.0)
        if answered < result.plan.delay - 0.01:
            result.kind = UNEXPECTED
            result.detail = f"200 after {answered:.3f} s, before the delay"
        return
    if status == 503 and body in (BODY_503_DRAIN, BODY_503_REJECTED):
        drained = body == BODY_503_DRAIN
        problems = []
        if headers.get("retry-after") != ("5" if drained else "1"):
            problems.append(f"Retry-After {headers.get('retry-after')!r}")
        if headers.get("connection", "").lower() != "close":
            problems.append(f"Connection {headers.get('connection')!r}")
        if response.closed_after != "eof":
            problems.append(f"then {response.closed_after}")
        if not problems:
            result.kind = DRAINED_503 if drained else REJECTED_503
            return
        result.kind = UNEXPECTED
        result.detail = f"503 with {', '.join(problems)}"
        return
    result.kind = UNEXPECTED
    result.detail = f"{status} {headers} {body[:200]!r}"


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def one(
    plan: Plan, port: int, clock: Clock, connection: Connection | None = None
) -> Result:
    """
    Send C{plan}'s request, on a new connection or on C{connection}, and
    say what came of it.
    """
    result = Result(plan, UNEXPECTED, started=clock.now())

    def no_answer(how: str, received: int, refusal: bool = True) -> Result:
        result.ended = clock.now()
        result.detail = f"{how} after {received} bytes"
        sigterm = clock.sigterm
        after_stop = sigterm is not None and result.ended >= sigterm
        if refusal and received == 0 and after_stop:
            result.kind = REFUSED
        return result

    try:
        if connection is None:
            connection = await asyncio.wait_for(
                asyncio.open_connection(HOST, port), 10.0
            )
    except ConnectionRefusedError:
        return no_answer("connection refused", 0)
    except (OSError, asyncio.TimeoutError) as e:
        return no_answer(f"connect failed: {e!r}", 0, refusal=False)
    reader, writer = connection
    got = bytearray()
    try:
        writer.write(plan.request)
        await writer.drain()
        result.sent = clock.now()
        answer = asyncio.ensure_future(read_response(reader, got))
        try:
            if plan.abort is not None:
                left = result.sent + plan.wait - clock.now()
                await asyncio.wait({answer}, timeout=max(left, 0.0))
                now = clock.now()
                if not answer.done() and not got:
                    if clock.may_abort(now):
                        answer.cancel()
                        if plan.abort == "reset":
                            sock = writer.get_extra_info("socket")
                            linger = struct.pack("ii", 1, 0)
                            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                            writer.transport.abort()
                        else:
                            writer.close()
                        result.kind = INTERRUPTED
                        result.ended = now
                        result.detail = f"gave up ({plan.abort})"
                        return result
                    result.skipped_abort = True
            response = await asyncio.wait_for(answer, PATIENCE)
        except NoAnswer as e:
            return no_answer(e.how, e.received, e.how in ("reset", "eof"))
        except asyncio.TimeoutError:
            result.ended = clock.now()
            result.detail = f"no answer within {PATIENCE} s ({len(got)} bytes)"
            return result
        finally:
            if not answer.done():
                answer.cancel()
        result.ended = clock.now()
        classify(result, response)
        return result
    except ConnectionError as e:
        return no_answer(f"{e!r} while sending", len(got))
    finally:
        if not writer.is_closing():
            writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), 5.0)
        except (OSError, asyncio.TimeoutError):
            pass


async def http_stats(connection: Connection) -> dict[str, int]:
    """
    C{/stats}, asked on an open connection that stays open.
    """
    reader, writer = connection
    writer.write(f"GET /stats HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode("ascii"))
    response = await asyncio.wait_for(read_response(reader, bytearray()), 10.0)
    assert response.status == 200, response
    stats: dict[str, int] = json.loads(response.body)
    return stats


@dataclass
class Run:
    seed: int
    results: list[Result]
    clock: Clock
    stats: dict[str, int]  # just before the SIGTERM
    stats_during: dict[str, int]  # during the drain, once the late ones had 503
    stats_during_at: float  # monotonic, when it was answered
    returncode: int
    events: list[dict[str, Any]]
    stray: list[str]
    output: str
    seconds: float

    def count(self) -> Counter[str]:
        return Counter(r.kind for r in self.results)

    def summary(self) -> str:
        c = self.count()
        aborts = Counter(r.plan.abort for r in self.results if r.kind == INTERRUPTED)
        refused = Counter(
            r.detail.split(" after ")[0] for r in self.results if r.kind == REFUSED
        )
        skipped = sum(r.skipped_abort for r in self.results)
        exit_after = (self.clock.exited or math.nan) - (self.clock.sigterm or math.nan)
        return (
            f"soak seed={self.seed}: sent {len(self.results)}, "
            f"completed {c[COMPLETED]}, interrupted {c[INTERRUPTED]} "
            f"(close {aborts['close']}, reset {aborts['reset']}), "
            f"answered-503 {c[DRAINED_503] + c[REJECTED_503]} "
            f"(drain {c[DRAINED_503]}, rejected {c[REJECTED_503]}), "
            f"refused {c[REFUSED]} ({dict(refused)}), unexpected {c[UNEXPECTED]}; "
            f"{skipped} aborts skipped in quiet times; SIGTERM at "
            f"+{self.clock.sigterm or math.nan:.2f} s, exit {self.returncode} "
            f"{exit_after:.2f} s later; {self.seconds:.1f} s in all"
        )


@dataclass
class Soaked:
    results: list[Result]
    clock: Clock
    stats: dict[str, int]
    stats_during: dict[str, int]
    stats_during_at: float


async def soak(port: int, server: Server, seed: int) -> Soaked:
    plans = make_plan(seed)
    scheduled = [p for p in plans if not p.late]
    clock = Clock()
    slots = asyncio.Semaphore(CONCURRENCY)
    stats: dict[str, dict[str, int]] = {}
    late_results: list[Result] = []
    stats_during_at = math.nan

    async def run_one(plan: Plan) -> Result:
        try:
            return await one(plan, port, clock)
        finally:
            slots.release()

    async def stop() -> None:
        nonlocal stats_during_at
        clock.quiet_from = clock.now()
        # Connections the server accepts before the stop, to send on after.
        # /stats answered on the last means it has accepted them all.
        late = [await asyncio.open_connection(HOST, port) for _ in range(LATE + 1)]
        stats["before"] = await http_stats(late[-1])
        await asyncio.sleep(
            max(clock.quiet_from + QUIET_BEFORE_SIGTERM - clock.now(), 0)
        )
        clock.sigterm = clock.now()
        server.process.send_signal(signal.SIGTERM)
        deadline = clock.sigterm + 5.0
        while not server.port_closed.is_set():
            assert clock.now() < deadline, "the listener did not close within 5 s"
            await asyncio.sleep(0.005)
        clock.drain_seen = clock.now()
        late_results.extend(
            await asyncio.gather(
                *(
                    one(plan, port, clock, connection)
                    for plan, connection in zip(plans[-LATE:], late, strict=False)
                )
            )
        )
        # Refused at once, they are all in the rejected count by now; the
        # grace has not run out, so the server has ended nothing yet.
        stats["during"] = await http_stats(late[-1])
        stats_during_at = clock.now()
        late[-1][1].close()
        while server.process.poll() is None and clock.now() < clock.sigterm + 15.0:
            await asyncio.sleep(0.01)
        clock.exited = clock.now()

    tasks: list[asyncio.Task[Result]] = []
    stopping: asyncio.Task[None] | None = None
    for plan in scheduled:
        left = plan.at - clock.now()
        if left > 0:
            await asyncio.sleep(left)
        await slots.acquire()
        tasks.append(asyncio.ensure_future(run_one(plan)))
        if len(tasks) == len(scheduled) // 2:
            stopping = asyncio.ensure_future(stop())
    results = list(await asyncio.gather(*tasks))
    assert stopping is not None
    await stopping
    return Soaked(
        results + late_results,
        clock,
        stats["before"],
        stats["during"],
        stats_during_at,
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    started = time.monotonic()
    server = Server(
        tmp_path_factory.mktemp("soak"),
        "--listen",
        f"tcp:0:interface={HOST}",
        "--shutdown-grace",
        f"{GRACE:g}",
        "--max-pending",
        "1000000",
        # Every client is on one address.
        "--max-connections-per-client",
        "0",
    )
    try:
        port = server.port()
        soaked = asyncio.run(asyncio.wait_for(soak(port, server, SEED), 120))
        try:
            returncode = server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            returncode = -999
        server.finish()
        done = Run(
            SEED,
            soaked.results,
            soaked.clock,
            soaked.stats,
            soaked.stats_during,
            soaked.stats_during_at,
            returncode,
            server.events,
            server.stray,
            server.output,
            time.monotonic() - started,
        )
        print(done.summary())
        yield done
    finally:
        server.finish()


# -- the server's records --------------------------------------------------


@dataclass
class Records:
    outcomes: dict[int, list[str]]  # request index: the endings logged for it
    endings: Counter[str]  # every ending, logged one by one or in summaries
    drain: dict[str, Any]  # the drain summary's fields
    errors: list[str]

    @property
    def by_clients(self) -> dict[str, int]:
        return {e: n for e, n in self.endings.items() if e not in BY_SERVER}

    @property
    def by_server(self) -> int:
        return sum(n for e, n in self.endings.items() if e in BY_SERVER)


def records(run: Run) -> Records:
    outcomes: dict[int, list[str]] = {}
    endings: Counter[str] = Counter()
    drains = []
    errors = []
    for event in run.events:
        fmt = str(event.get("log_format", ""))
        level = getattr(event.get("log_level"), "name", "")
        if (
            "log_failure" in event
            or event.get("isError")
            or level in ("error", "critical")
        ):
            errors.append(formatEvent(event))
        if isinstance(outcome := event.get("outcome"), dict):
            endings[outcome["ending"]] += 1
            if m := SOAK_PATH.match(outcome["path"]):
                outcomes.setdefault(int(m.group(1)), []).append(outcome["ending"])
        if isinstance(counts := event.get("counts"), dict) and fmt.startswith("..."):
            endings.update(counts)
        if fmt.startswith("Shutdown drain:"):
            drains.append(event)
    assert len(drains) == 1, f"{len(drains)} drain summaries\n{run.summary()}"
    return Records(outcomes, endings, drains[0], errors)


# -- the tests -------------------------------------------------------------


def ids(results: list[Result], *kinds: str) -> set[int]:
    return {r.plan.index for r in results if r.kind in kinds}


def test_every_request_is_accounted_for_once(run: Run) -> None:
    assert sorted(r.plan.index for r in run.results) == list(range(REQUESTS))
    c = run.count()
    kinds = (COMPLETED, INTERRUPTED, DRAINED_503, REJECTED_503, REFUSED)
    assert sum(c[k] for k in kinds) + c[UNEXPECTED] == REQUESTS, run.summary()
    # The plan exercised every kind.
    for kind in kinds:
        assert c[kind] > 0, f"no {kind}: {run.summary()}"


def test_no_request_got_an_unexpected_answer(run: Run) -> None:
    unexpected = [r.describe() for r in run.results if r.kind == UNEXPECTED]
    assert not unexpected, (
        f"{len(unexpected)} unexpected: {run.summary()}\n" + "\n".join(unexpected[:50])
    )


def test_the_server_exits_cleanly_within_the_grace(run: Run) -> None:
    assert run.returncode in (0, -signal.SIGTERM, 128 + signal.SIGTERM), run.summary()
    assert run.clock.sigterm is not None and run.clock.exited is not None
    assert run.clock.exited - run.clock.sigterm < EXIT_BOUND, run.summary()


def test_the_output_has_no_traceback_nor_error(run: Run) -> None:
    assert "Traceback" not in run.output, run.summary()
    assert "Unhandled" not in run.output, run.summary()
    errors = records(run).errors
    assert not errors, f"{run.summary()}\n" + "\n".join(errors[:20])
    assert not run.stray, f"{run.summary()}\nnot JSON:\n" + "\n".join(run.stray[:20])


def test_the_drain_leaves_nothing_pending(run: Run) -> None:
    drain = records(run).drain
    assert drain["still_pending"] == 0, (drain, run.summary())
    assert drain["streams"] == 0, (drain, run.summary())
    # It ran while requests were pending and had to answer some with 503.
    assert run.stats["pending"] > 0 and run.stats["rejected"] == 0, run.stats
    assert GRACE - 0.05 < drain["elapsed"] < EXIT_BOUND, (drain, run.summary())


def test_the_server_counts_the_same_interruptions(run: Run) -> None:
    r = records(run)
    aborts = Counter(
        CLIENT_ENDINGS[res.plan.abort]
        for res in run.results
        if res.kind == INTERRUPTED and res.plan.abort is not None
    )
    assert r.by_clients == dict(aborts), (
        f"{r.by_clients} != {dict(aborts)}\n{run.summary()}"
    )
    # Those logged one by one name the very requests, with the same ending.
    by_index = {res.plan.index: res for res in run.results}
    for index, endings in r.outcomes.items():
        res = by_index[index]
        if endings == ["shutdown"]:
            assert res.kind == DRAINED_503, res.describe()
        else:
            assert res.kind == INTERRUPTED, res.describe()
            assert res.plan.abort is not None
            assert endings == [CLIENT_ENDINGS[res.plan.abort]], (
                endings,
                res.describe(),
            )


def test_the_log_reports_every_request_the_drain_ended(run: Run) -> None:
    """
    Each request the drain answered 503 is an outcome "shutdown", logged on
    its own line or counted in a "... and N more interruptions" summary.
    """
    r = records(run)
    drained = run.count()[DRAINED_503]
    logged = sum(1 for e in r.outcomes.values() if e == ["shutdown"])
    assert r.endings["shutdown"] == drained, (
        f"the log reports {r.endings['shutdown']} requests ended by the server "
        f"({logged} one by one), the drain summary {r.drain['unavailable']}, "
        f"the clients saw {drained} such 503s\n{run.summary()}"
    )
    assert r.by_server == drained, (r.endings, run.summary())


def test_the_drain_summary_agrees_with_the_clients(run: Run) -> None:
    drain = records(run).drain
    clock = run.clock
    assert clock.sigterm is not None and clock.drain_seen is not None
    c = run.count()
    assert drain["unavailable"] == c[DRAINED_503], (drain, run.summary())
    # The drain's 503s come when the grace has run out, not before.
    early = [
        res.describe()
        for res in run.results
        if res.kind == DRAINED_503 and res.ended < clock.sigterm + GRACE - 0.01
    ]
    assert not early, "\n".join(early)
    # No client gave up from QUIET_BEFORE_SIGTERM before the SIGTERM until
    # QUIET_AFTER_DRAIN after the log showed the drain: which side of it each
    # interruption fell is known.
    during = [
        res
        for res in run.results
        if res.kind == INTERRUPTED and res.ended >= clock.drain_seen
    ]
    assert drain["interrupted"] == len(during), (drain, run.summary())


def test_the_server_completed_what_the_clients_saw_completed(run: Run) -> None:
    """
    The server never logs a completion; its count comes from /stats asked
    during the drain, when nothing new is taken on any more: each request
    pending then has since ended exactly one way, and the log counts all
    but the completions.
    """
    r = records(run)
    during = run.stats_during
    interrupted_since = sum(r.by_clients.values()) - during["interrupted"]
    ended_by_server_since = r.drain["unavailable"] - during["server_ended"]
    completed_since = during["pending"] - interrupted_since - ended_by_server_since
    completed = during["completed"] + completed_since
    assert completed == run.count()[COMPLETED], (
        f"the server completed {completed}: {during} then {completed_since} of "
        f"the pending; the clients saw {run.count()[COMPLETED]}\n{run.summary()}"
    )
    # The drain began between the two /stats.
    began = completed - r.drain["completed"]
    assert run.stats["completed"] <= began <= during["completed"], (
        run.stats,
        during,
        r.drain,
    )
    interrupted_before = sum(r.by_clients.values()) - r.drain["interrupted"]
    assert run.stats["interrupted"] <= interrupted_before <= during["interrupted"], (
        run.stats,
        during,
        r.drain,
    )


def test_stats_during_the_drain_count_the_refused_requests(run: Run) -> None:
    """
    Requests on connections from before the stop are refused at once with
    503 (counted as rejected); before the stop, nothing was.
    """
    clock = run.clock
    assert clock.drain_seen is not None
    late = [r for r in run.results if r.plan.late]
    assert [r.kind for r in late] == [REJECTED_503] * LATE, "\n".join(
        r.describe() for r in late if r.kind != REJECTED_503
    )
    rejected = [r for r in run.results if r.kind == REJECTED_503]
    # All of them were answered before /stats was asked, well within the grace.
    assert max(r.ended for r in rejected) < run.stats_during_at
    assert run.stats_during_at < clock.drain_seen + GRACE - QUIET_AROUND_GRACE
    during = run.stats_during
    assert run.stats["rejected"] == 0, run.stats
    assert during["rejected"] == len(rejected), (during, run.summary())
    assert during["server_ended"] == 0, (during, run.summary())
