"""
Every Python sample in the README is a file under C{examples/}, shown
as it is; each runs, as the README says to run it, and does and prints
what the text says.  The pages under C{docs/} show code only by including
a file from the tree, and every page is in the built docs.
"""

from __future__ import annotations

import re
import runpy
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site

from twisted_close import DelayedResource, Ending, Ledger
from twisted_close.testing import InMemoryServer

from .helpers import get_request
from .program import Program

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
TEXT = README.read_text()
EXAMPLES = ROOT / "examples"
BLOCKS = re.findall(r"```python\n(.*?)```", TEXT, re.S)
# Each Python block follows a link to its file: "[`examples/x.py`](examples/x.py):"
SHOWN = re.findall(
    r"\[`examples/([\w.]+)`\]\(examples/\1\):\n\n```python\n(.*?)```", TEXT, re.S
)
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
# A page shows a file of the tree as it is: "```{literalinclude} ../x/y"
INCLUDED = [
    (page, (page.parent / path).resolve())
    for page in PAGES
    for path in re.findall(r"^```\{literalinclude\} (\S+)$", page.read_text(), re.M)
]
LISTEN = "tcp:0:interface=127.0.0.1"
NUMBER = {False: r"\d+", True: "0x[0-9a-f]+"}


def example(name: str) -> dict[str, Any]:
    """
    Run C{examples/name} as a module (not as the main program); its names.
    """
    return runpy.run_path(str(EXAMPLES / name), run_name="readme_sample")


def command(name: str) -> list[str]:
    """
    The README's command that runs C{examples/name}, exactly as written
    (a line of a C{sh} block), run by this Python.
    """
    lines = re.findall(rf"^python examples/{re.escape(name)}$", TEXT, re.M)
    assert len(lines) == 1, f"not one 'python examples/{name}' line in the README"
    python, *argv = shlex.split(lines[0])
    assert python == "python"
    return [sys.executable, *argv]


def shown_output(name: str) -> list[str]:
    """
    The lines of the plain block the README shows after the command that
    runs C{examples/name}: what the program prints.
    """
    command = f"\npython examples/{name}\n```\n"
    after = TEXT[TEXT.index(command) + len(command) :]
    match = re.match(r".*?\n```\n(.*?)```", after, re.S)
    assert match is not None
    return match.group(1).splitlines()


def shape(line: str) -> re.Pattern[str]:
    """
    A pattern for C{line} in which every number (a time, a port, an
    address) may be any other: the README shows one run, a test makes
    another.
    """
    parts = re.split(r"(0x[0-9a-f]+|\d+)", line)
    # re.split puts the separators (the numbers) at the odd places.
    pattern = "".join(
        re.escape(part) if i % 2 == 0 else NUMBER[part.startswith("0x")]
        for i, part in enumerate(parts)
    )
    return re.compile(pattern + "$")


def assert_prints(shown: list[str], printed: list[str]) -> None:
    """
    Every line C{shown} is printed, in that order, numbers aside.
    """
    rest = iter(printed)
    for line in shown:
        pattern = shape(line)
        assert any(pattern.match(p) for p in rest), (
            f"{line!r} not printed (in order); printed:\n" + "\n".join(printed)
        )


class ReadmeTests(SynchronousTestCase):
    def test_every_python_sample_is_an_example_file(self) -> None:
        self.assertEqual(len(SHOWN), len(BLOCKS))
        for name, code in SHOWN:
            self.assertEqual(code, (EXAMPLES / name).read_text(), name)

    def test_every_example_file_is_shown_or_linked(self) -> None:
        # A longer program is linked rather than copied: it cannot drift.
        linked = re.findall(r"\[`examples/([\w.]+)`\]\(examples/\1\)", TEXT)
        included = {p.name for _, p in INCLUDED if p.parent == EXAMPLES}
        self.assertEqual(
            sorted(set(linked) | included | {name for name, code in SHOWN}),
            sorted(p.name for p in EXAMPLES.glob("*.py")),
        )

    def test_the_output_pattern_ignores_numbers_only(self) -> None:
        pattern = shape("at 0x7f01 on 127.0.0.1:8080 after 1.00 s")
        self.assertTrue(pattern.match("at 0xab on 127.0.0.1:35123 after 0.31 s"))
        self.assertFalse(pattern.match("at 0xab on 127.0.0.1:35123 after 0.31 ms"))

    def test_embedding_sample_serves_and_reports(self) -> None:
        sample = example("embed.py")
        slow = sample["root"].children[b"slow"]
        self.assertIsInstance(slow, DelayedResource)
        # The sample uses the global reactor; drive it on a Clock instead.
        slow.clock = clock = Clock()
        server = InMemoryServer(sample["site"], clock=clock)
        done, left = server.get("/slow"), server.get("/slow/deeper")
        left.reset()
        clock.advance(2)
        assert done.response is not None
        self.assertEqual(done.response.body, b"<p>done</p>")
        self.assertEqual(
            sample["ledger"].snapshot(),
            {
                "pending": 0,
                "completed": 1,
                "interrupted": 1,
                "rejected": 0,
                "server_ended": 0,
            },
        )

    def test_cancel_on_disconnect_sample_cancels_the_call(self) -> None:
        sample = example("report.py")
        clock, ledger = Clock(), Ledger()
        server = InMemoryServer(sample["Report"](clock, ledger), clock=clock)
        done, left = server.get("/"), server.get("/")
        server.advance(1)
        left.close()
        server.advance(4)
        assert done.response is not None
        self.assertEqual(done.response.body, b"report ready")
        self.assertIsNone(left.response)
        self.assertEqual((ledger.completed, ledger.interrupted), (1, 1))
        done.close()  # its keep-alive idle timer goes with it
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_async_sample_is_cancelled_and_cleans_up(self) -> None:
        sample = example("search.py")
        clock, ledger = Clock(), Ledger()
        search = sample["Search"](clock=clock, ledger=ledger)
        server = InMemoryServer(search, clock=clock)
        done, left = server.get("/?q=a"), server.get("/?q=b")
        server.advance(1)
        left.close()
        self.assertEqual(search.log, ["cleaned up"])
        server.advance(2)
        assert done.response is not None
        self.assertEqual(done.response.body, b"results")
        self.assertEqual(search.log, ["cleaned up", "cleaned up"])
        self.assertEqual((ledger.completed, ledger.interrupted), (1, 1))

    def test_event_source_sample_streams_every_other_tick(self) -> None:
        sample = example("prices.py")
        server = InMemoryServer(sample["events"], clock=sample["clock"])
        client = server.get("/")
        for _ in range(4):
            server.advance(0.5)
        self.assertIn(
            b'event: price\nid: 2\ndata: {"price": 102}\n\n', client.transport.value()
        )
        self.assertEqual(client.transport.value().count(b"event: price"), 2)
        client.close()
        self.assertEqual(sample["ledger"].interrupted, 1)

    def test_klein_sample_is_cancelled_when_the_client_leaves(self) -> None:
        sample = example("klein_app.py")
        sample["slow"].clock = clock = Clock()
        site = Site(sample["app"].resource(), reactor=clock)
        server = InMemoryServer(site, clock=clock)
        done, left = server.get("/slow"), server.get("/slow/x")
        left.reset()
        clock.advance(2)
        assert done.response is not None
        self.assertEqual(done.response.body, b"slow hello")
        ledger: Ledger = sample["ledger"]
        self.assertEqual((ledger.completed, ledger.interrupted), (1, 1))
        self.assertEqual(ledger.interruptions[Ending.CLIENT_RESET], 1)

    def test_limits_and_host_check_sample(self) -> None:
        sample = example("limits.py")
        clock = Clock()
        events = sample["root"].children[b"events"]
        events.clock = clock
        server = InMemoryServer(sample["site"], clock=clock)
        opened = [server.get("/events") for _ in range(4)]
        self.assertTrue(all(c.transport.value()[9:12] == b"200" for c in opened))
        refused = server.get("/events").response
        assert refused is not None
        self.assertEqual(refused.status, 429)
        other = server.connect("127.0.0.2").request("/events", host="a.example.com")
        self.assertEqual(other.transport.value()[9:12], b"200")
        elsewhere = server.connect("127.0.0.3").request(
            "/events", host="attacker.example"
        )
        self.assertEqual(elsewhere.transport.value()[9:12], b"421")
        self.assertEqual(sample["ledger"].limits.streams, 5)
        for client in [*opened, other]:
            client.close()

    def test_testing_sample_runs_its_own_assertions(self) -> None:
        sample = example("in_memory.py")
        self.assertEqual(sample["ledger"].interrupted, 1)


# The programs, run as the README says, in subprocesses (real sockets).


@pytest.fixture
def programs() -> Iterator[list[Program]]:
    started: list[Program] = []
    try:
        yield started
    finally:
        for program in started:
            program.kill()


def request(port: int, path: str = "/slow") -> socket.socket:
    client = socket.create_connection(("127.0.0.1", port), timeout=10)
    client.sendall(get_request(path))
    return client


def serve(programs: list[Program], name: str) -> tuple[Program, int]:
    """
    Start C{examples/name} as the README says, on a port of the kernel's
    choice (the optional argument the examples take); its port.
    """
    program = Program([*command(name), LISTEN], ROOT)
    programs.append(program)
    port = int(program.wait_for_line(r"Site starting on (\d+)$", timeout=30)[1])
    return program, port


def test_embed_example_logs_who_ended_each_request(programs: list[Program]) -> None:
    """
    The README's walk through C{examples/embed.py}: a client that gives up
    is logged as leaving; a request cut by Ctrl-C (no GracefulDrain) is
    logged as the server's doing, not the client's.
    """
    program, port = serve(programs, "embed.py")
    with request(port) as impatient:
        impatient_port = impatient.getsockname()[1]
        time.sleep(0.3)  # curl -m gives up, then closes cleanly
    program.wait_for_line(
        rf"Connection interrupted: GET /slow from 127\.0\.0\.1:{impatient_port} "
        r"after 0\.\d\d s while waiting \(client closed the connection\)$"
    )
    with request(port) as pending:
        pending_port = pending.getsockname()[1]
        time.sleep(0.3)
        program.process.send_signal(signal.SIGINT)  # Ctrl-C
        assert program.finish() == 0, program.output
    assert_prints(shown_output("embed.py"), program.lines)
    assert re.search(
        rf"Ended by the server: GET /slow from 127\.0\.0\.1:{pending_port} "
        r"after 0\.\d\d s while waiting \(server shutting down\)$",
        program.output,
        re.M,
    ), program.output
    assert "Traceback" not in program.output


def test_a_reactor_stop_is_counted_as_the_servers_doing() -> None:
    """
    On a real reactor stopped with a request pending (no GracefulDrain),
    the request counts as ended by the server, not interrupted.
    """
    script = (
        "import runpy, sys\n"
        "sys.argv[:] = sys.argv[1:]  # as if run as a program\n"
        "sample = runpy.run_path(sys.argv[0], run_name='__main__')\n"
        "print('snapshot', sample['ledger'].snapshot())\n"
    )
    program = Program(
        [sys.executable, "-c", script, str(EXAMPLES / "embed.py"), LISTEN], ROOT
    )
    try:
        port = int(program.wait_for_line(r"Site starting on (\d+)$", timeout=30)[1])
        with request(port):
            time.sleep(0.3)
            program.process.send_signal(signal.SIGTERM)
            assert program.finish() == 0, program.output
    finally:
        program.kill()
    assert (
        "snapshot {'pending': 0, 'completed': 0, 'interrupted': 0, "
        "'rejected': 0, 'server_ended': 1}" in program.output
    ), program.output


def test_klein_example_runs_and_logs_a_client_leaving(
    programs: list[Program],
) -> None:
    program, port = serve(programs, "klein_app.py")
    with request(port) as impatient:
        impatient_port = impatient.getsockname()[1]
        time.sleep(0.3)
    program.wait_for_line(
        rf"Connection interrupted: GET /slow from 127\.0\.0\.1:{impatient_port} "
        r"after 0\.\d\d s while waiting \(client closed the connection\)$"
    )
    program.process.send_signal(signal.SIGINT)
    assert program.finish() == 0, program.output
    assert_prints(shown_output("klein_app.py"), program.lines)
    assert "Traceback" not in program.output


def test_in_memory_example_prints_what_the_readme_shows() -> None:
    result = subprocess.run(
        command("in_memory.py"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == shown_output("in_memory.py")


class EndingsTableTests(SynchronousTestCase):
    def test_the_endings_table_lists_every_ending_once(self) -> None:
        """
        Whoever adds an L{Ending} adds its row to "What each ending means",
        and no row names an ending that does not exist.
        """
        text = README.read_text()
        section = text.split("\n## What each ending means\n", 1)[1].split("\n## ")[0]
        rows = [line for line in section.splitlines() if line.startswith("| `")]
        reasons = [re.match(r"\| `([^`]+)` \|", row).group(1) for row in rows]  # type: ignore[union-attr]
        self.assertEqual(len(reasons), len(set(reasons)))
        self.assertEqual(sorted(reasons), sorted(e.value for e in Ending))
        for row in rows:
            # reason, cause, certainty: each said.
            cells = [c.strip() for c in row.strip("|").split(" | ")]
            self.assertEqual(len(cells), 3, row)
            self.assertTrue(all(cells), row)


class DocsPagesTests(SynchronousTestCase):
    def test_a_page_shows_python_only_by_including_a_file(self) -> None:
        for page in PAGES:
            self.assertNotIn("```python", page.read_text(), page)

    def test_every_included_file_exists_and_a_test_runs_it(self) -> None:
        tests = "".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
        for page, path in INCLUDED:
            self.assertTrue(path.is_file(), f"{page.name}: {path}")
            if path.suffix in {".py", ".yml", ".conf"}:
                # Named in a test: run, loaded or checked by it.
                self.assertIn(path.name, tests, f"{page.name}: {path.name}")

    def test_every_page_is_in_the_toctree_and_linked_from_the_readme(self) -> None:
        index = (DOCS / "index.md").read_text()
        toctree = index.partition("```{toctree}")[2].partition("```")[0]
        listed = {line for line in toctree.splitlines() if line and ":" not in line}
        pages = {p.stem for p in DOCS.glob("*.md")} - {"index"}
        self.assertEqual(listed, pages)
        for name in pages:
            self.assertIn(f"](docs/{name}.md)", TEXT, name)
        for name in re.findall(r"\]\(docs/([\w-]+)\.md\)", TEXT):
            self.assertIn(name, pages)

    def test_links_between_pages_resolve(self) -> None:
        for page in PAGES:
            for link in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
                self.assertTrue((page.parent / link).exists(), f"{page.name}: {link}")

    def test_the_outcome_fields_the_readme_lists_are_outcomes(self) -> None:
        import dataclasses

        from twisted_close import Outcome

        [listed] = re.findall(r"an `Outcome` \(([^)]*)\)", TEXT.replace("\n", " "))
        fields = [f.name for f in dataclasses.fields(Outcome)]
        self.assertEqual(re.findall(r"`(\w+)`", listed), fields)

    def test_the_embed_example_is_on_the_first_screen(self) -> None:
        # A newcomer reads the library's use before anything about the demo.
        end = TEXT.index("```", TEXT.index("```python") + 3)
        self.assertLess(TEXT[:end].count("\n"), 60)


def table_rows(text: str, heading: str) -> list[list[str]]:
    """
    The cells of each body row of the first table after C{heading}.
    """
    section = text.split(heading, 1)[1]
    rows: list[list[str]] = []
    for line in section.splitlines():
        if rows and not line.startswith("|"):
            break
        if line.startswith("|") and not line.startswith("| ---"):
            # A cell may hold an escaped pipe (`leave\|answer`).
            rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
    # The header row names the columns: "default" among them.
    return rows[1:] if rows and "default" in rows[0] else rows


def help_defaults() -> dict[str, str | None]:
    from twisted_close.closedemo import tap

    parameters = cast(list[list[Any]], tap.Options.optParameters)
    return {p[0]: p[2] for p in parameters}


class OptionTablesTests(SynchronousTestCase):
    def test_the_limits_table_lists_every_bound_with_its_help_default(self) -> None:
        from twisted_close import Ledger
        from twisted_close.closedemo import tap

        defaults = help_defaults()
        listed = {}
        for _, option, default, _ in table_rows(TEXT, "## Limits"):
            if option == "none":
                continue
            name = option.strip("`").removeprefix("--")
            listed[name] = default
        self.assertEqual(sorted(listed), sorted(tap.BOUNDS))
        for name, default in listed.items():
            given = defaults[name]
            if given is None:
                # Not a fixed number: the help says how it is reckoned.
                self.assertIsNone(re.fullmatch(r"`[^`]*`", default), name)
            else:
                self.assertEqual(default, f"`{given}`", name)
        # The one bound that is no option: the log's, as the ledger's default.
        [fixed] = [r for r in table_rows(TEXT, "## Limits") if r[1] == "none"]
        self.assertEqual(fixed[2], "50 lines, 64 KiB")
        reporter = Ledger()._reporter
        self.assertEqual(
            (reporter._per_second, reporter._bytes_per_second), (50, 64 * 1024)
        )

    def test_the_demo_page_lists_every_option_with_its_help_default(self) -> None:
        rows = table_rows((DOCS / "demo.md").read_text(), "| option |")
        page = {}
        for option, default, _ in [(r[0], r[1], r[2]) for r in rows]:
            found = re.match(r"`--([\w-]+)", option)
            assert found is not None, option
            page[found.group(1)] = default
        defaults = help_defaults()
        self.assertEqual(
            sorted(page), sorted([*defaults, "listen", "allowed-host", "trusted-proxy"])
        )
        for name, given in defaults.items():
            if given is not None:
                self.assertEqual(page[name], f"`{given}`", name)
