"""
The twistd plugin: options, the service it makes, and its discovery.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Sequence
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any, cast

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IServiceMaker, MultiService
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactor
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.plugin import IPlugin, getPlugins
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

import twisted_close
from twisted_close import ConnectionPolicy
from twisted_close._drain import GracefulDrain
from twisted_close.closedemo import tap
from twisted_close.closedemo.descriptors import DescriptorRoom
from twisted_close.closedemo.restart import Generation
from twisted_close.closedemo.signals import QuietRepeatedStops

from .helpers import self_signed, temporary_directory


def parse(*argv: str) -> tap.Options:
    options = tap.Options()
    options.parseOptions(list(argv))
    return options


def assert_usage_errors(
    case: SynchronousTestCase,
    cases: Iterable[tuple[Sequence[str], str]],
    then: str = "",
) -> None:
    """
    Each argv of C{cases} is a one-line usage error that starts with its
    option, followed by C{then}.
    """
    for argv, option in cases:
        with case.subTest(argv=argv):
            with case.assertRaises(UsageError) as caught:
                parse(*argv)
            message = str(caught.exception)
            case.assertTrue(message.startswith(option + then), message)
            case.assertNotIn("\n", message)


class OptionsTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        options = parse()
        self.assertEqual(options["listen"], ["tcp:1337:interface=127.0.0.1"])
        self.assertEqual(options["delay"], 10.0)
        self.assertEqual(options["max-delay"], 60.0)
        self.assertEqual(options["message"], "hello")
        self.assertEqual((options["tick"], options["heartbeat"]), (1.0, 15.0))
        self.assertEqual(options["shutdown-grace"], 5.0)
        self.assertEqual(options["max-pending"], 10000)
        self.assertEqual(options["idle-timeout"], 75.0)

    def test_operating_values_are_coerced(self) -> None:
        options = parse(
            "--shutdown-grace", "0", "--max-pending", "7", "--idle-timeout", "2.5"
        )
        self.assertEqual(options["shutdown-grace"], 0.0)
        self.assertEqual(options["max-pending"], 7)
        self.assertEqual(options["idle-timeout"], 2.5)

    def test_heartbeat_zero_turns_it_off(self) -> None:
        options = parse("--tick", "0.25", "--heartbeat", "0")
        self.assertEqual((options["tick"], options["heartbeat"]), (0.25, None))

    def test_values_are_coerced(self) -> None:
        options = parse("--delay", "0.5", "--max-delay", "2", "-m", "bye")
        self.assertEqual(
            (options["delay"], options["max-delay"], options["message"]),
            (0.5, 2.0, "bye"),
        )

    def test_listen_repeats(self) -> None:
        options = parse("--listen", "tcp:8001", "--listen", "unix:/tmp/x.sock")
        self.assertEqual(options["listen"], ["tcp:8001", "unix:/tmp/x.sock"])

    def test_max_body_is_bytes_from_0(self) -> None:
        self.assertEqual(tap.site_settings(parse())["max_body"], 65536)
        self.assertEqual(tap.site_settings(parse("--max-body", "0"))["max_body"], 0)
        with self.assertRaises(UsageError) as caught:
            parse("--max-body", "-1")
        self.assertEqual(
            str(caught.exception),
            "--max-body: '-1' is not a number of bytes from 0 to 1,000,000,000",
        )

    def test_bad_values_name_the_option(self) -> None:
        cases = {
            ("--delay", "-1"): "--delay",
            ("--delay", "abc"): "--delay",
            ("--delay", "nan"): "--delay",
            ("--delay", "61"): "--delay",
            ("--delay", "5", "--max-delay", "1"): "--delay",
            ("--max-delay", "x"): "--max-delay",
            ("--tick", "0"): "--tick",
            ("--tick", "-1"): "--tick",
            ("--heartbeat", "soon"): "--heartbeat",
            ("--shutdown-grace", "-1"): "--shutdown-grace",
            ("--shutdown-grace", "3601"): "--shutdown-grace",
            ("--max-pending", "0"): "--max-pending",
            ("--max-pending", "1.5"): "--max-pending",
            ("--max-pending", "lots"): "--max-pending",
            ("--max-pending", "99999999"): "--max-pending",
            ("--idle-timeout", "0"): "--idle-timeout",
            ("--idle-timeout", "x"): "--idle-timeout",
            ("--listen", "bogus:1"): "--listen",
            ("--listen", "tcp:notaport"): "--listen",
            ("--listen", "tcp:80:nosuch=1"): "--listen",
            ("--listen", "ssl:8443:privateKey=/nonexistent/key.pem"): "--listen",
        }
        assert_usage_errors(self, cases.items())

    def test_over_the_maximum_says_the_maximum(self) -> None:
        with self.assertRaises(UsageError) as caught:
            parse("--delay", "61")
        self.assertIn("60", str(caught.exception))


class ServiceTests(SynchronousTestCase):
    def test_one_listener_per_listen_option(self) -> None:
        service = tap.makeService(
            parse("--listen", "tcp:0:interface=127.0.0.1", "--listen", "tcp:0")
        )
        assert isinstance(service, MultiService)
        generation, drain, room, *listeners, quiet = list(service)
        # Services stop in reverse: the second signal is quieted first, the
        # ports close next, then the drain runs; the generation's last
        # counts are written once all is done.
        self.assertIsInstance(generation, Generation)
        self.assertIsInstance(drain, GracefulDrain)
        self.assertIsInstance(room, DescriptorRoom)
        self.assertEqual(len(listeners), 2)
        for listener in listeners:
            self.assertIsInstance(listener, StreamServerEndpointService)
            # The public endpoint, wrapped to announce the address.
            self.assertIsInstance(listener.endpoint, tap._AnnouncedEndpoint)
        self.assertIsInstance(quiet, QuietRepeatedStops)

    def test_listening_address_is_logged(self) -> None:
        reactor = MemoryReactor()
        endpoint = tap._AnnouncedEndpoint(
            serverFromString(reactor, "tcp:8123:interface=127.0.0.1"),
            "tcp:8123:interface=127.0.0.1",
        )
        with capturedLogs() as events:
            self.successResultOf(endpoint.listen(Factory()))
        [event] = [e for e in events if "address" in e]
        self.assertEqual(
            formatEvent(event),
            "closedemo listening on 0.0.0.0:8123 (tcp:8123:interface=127.0.0.1)",
        )


class PluginTests(SynchronousTestCase):
    def test_twistd_finds_closedemo(self) -> None:
        import twisted.plugins

        makers = {p.tapname: p for p in getPlugins(IServiceMaker, twisted.plugins)}
        self.assertIn("closedemo", makers)
        maker = makers["closedemo"]
        self.assertTrue(verifyObject(IServiceMaker, maker))
        self.assertTrue(verifyObject(IPlugin, maker))
        self.assertIs(maker.options, tap.Options)


class LimitOptionsTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        options = parse()
        self.assertEqual(options["max-streams"], 1000)
        self.assertEqual(options["max-streams-per-client"], 8)
        self.assertEqual(options["max-pending-per-client"], 1000)
        self.assertEqual(options["allowed-host"], [])
        self.assertEqual(parse("--max-pending", "7")["max-pending-per-client"], 1)
        self.assertEqual(parse("--max-pending", "50")["max-pending-per-client"], 5)

    def test_zero_turns_a_per_client_cap_off(self) -> None:
        options = parse(
            "--max-streams-per-client", "0", "--max-pending-per-client", "0"
        )
        self.assertIsNone(options["max-streams-per-client"])
        self.assertIsNone(options["max-pending-per-client"])

    def test_they_reach_the_limits_and_the_site(self) -> None:
        options = parse(
            "--max-streams", "9", "--allowed-host", "a.example", "--allowed-host", "*"
        )
        limits = tap.limits_settings(options)
        self.assertEqual(limits["max_pending"], 10000)
        self.assertEqual(limits["max_streams"], 9)
        self.assertEqual(limits["max_streams_per_client"], 8)
        self.assertEqual(limits["max_pending_per_client"], 1000)
        self.assertEqual(
            tap.site_settings(options)["allowed_hosts"], ["a.example", "*"]
        )

    def test_connections_per_client_reach_the_site(self) -> None:
        self.assertEqual(tap.site_settings(parse())["max_connections_per_client"], 64)
        off = parse("--max-connections-per-client", "0")
        self.assertIsNone(tap.site_settings(off)["max_connections_per_client"])

    def test_trusted_proxies_reach_the_site(self) -> None:
        self.assertEqual(tap.site_settings(parse())["trusted_proxies"], [])
        options = parse("--trusted-proxy", "127.0.0.1", "--trusted-proxy", "fd00::/8")
        self.assertEqual(
            tap.site_settings(options)["trusted_proxies"], ["127.0.0.1", "fd00::/8"]
        )

    def test_bad_values_name_the_option(self) -> None:
        cases = {
            ("--max-streams", "0"): "--max-streams",
            ("--max-streams", "x"): "--max-streams",
            ("--max-streams-per-client", "-1"): "--max-streams-per-client",
            ("--max-pending-per-client", "1.5"): "--max-pending-per-client",
            ("--allowed-host", "a b"): "--allowed-host",
            ("--allowed-host", "example.com:80"): "--allowed-host",
            ("--trusted-proxy", "localhost"): "--trusted-proxy",
            ("--max-connections-per-client", "-1"): "--max-connections-per-client",
            ("--max-connections-per-client", "x"): "--max-connections-per-client",
            ("--trusted-proxy", "10.0.0.0/33"): "--trusted-proxy",
            ("--trusted-proxy", ""): "--trusted-proxy",
        }
        assert_usage_errors(self, cases.items(), then=":")


# Every option's value, whatever it is: a usage error naming the option, or
# a value; never another exception (a traceback from twistd).

PARAMETERS = cast(list[list[Any]], tap.Options.optParameters)
OPTIONS = [p[0] for p in PARAMETERS] + ["listen"]
VALUES = st.one_of(
    st.text(max_size=40),
    st.from_regex(r"-?[0-9]{1,12}(\.[0-9]{0,4})?", fullmatch=True),
    st.sampled_from(
        [
            "0",
            "1",
            "3600",
            "3601",
            "86400",
            "1e3",
            "nan",
            "-",
            "tcp:0",
            "tcp:99999",
            "tcp:-1",
            "ssl:0",
            "unix:/nonexistent/x.sock",
            "/nonexistent/x.log",
            "/",
            "x\0y",
            "\udcff",  # a byte that is not UTF-8, as Python passes it on
        ]
    ),
)


def parse_or_usage_error(argv: list[str]) -> tap.Options | None:
    try:
        return parse(*argv)
    except UsageError as e:
        message = str(e)
        assert message.startswith("--") or "option" in message, message
        assert "\n" not in message, message
        return None


class RandomOptionTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.tuples(st.sampled_from(OPTIONS), VALUES), max_size=4))
    def test_any_values_give_options_or_a_usage_error(
        self, pairs: list[tuple[str, str]]
    ) -> None:
        options = parse_or_usage_error([f"--{name}={value}" for name, value in pairs])
        if options is not None:
            tap.makeService(options)  # builds, starts nothing

    @settings(max_examples=200, deadline=None)
    @given(st.sampled_from(OPTIONS), VALUES)
    def test_a_bad_value_names_its_option(self, name: str, value: str) -> None:
        try:
            parse(f"--{name}={value}")
        except UsageError as e:
            # It may be another option that it bounds ("--delay: ... over the
            # maximum of 0 s (--max-delay is 0)").
            self.assertIn(f"--{name}", str(e))


class OptionErrorTests(SynchronousTestCase):
    def test_a_seconds_option_says_its_own_noun(self) -> None:
        nouns = {
            "delay": "delay",
            "max-delay": "maximum delay",
            "tick": "tick",
            "heartbeat": "heartbeat",
            "shutdown-grace": "grace",
            "idle-timeout": "idle timeout",
        }
        for option, noun in nouns.items():
            with self.subTest(option=option):
                with self.assertRaises(UsageError) as caught:
                    parse(f"--{option}", "abc")
                self.assertEqual(
                    str(caught.exception),
                    f"--{option}: {noun} 'abc' is not a number of seconds "
                    "such as 2 or 0.5",
                )

    def test_a_message_that_is_not_utf8_is_a_usage_error(self) -> None:
        with self.assertRaises(UsageError) as caught:
            parse("--message", "caf\udce9")  # b"caf\xe9", Latin-1, on the command line
        self.assertEqual(
            str(caught.exception), "--message: 'caf\\udce9' is not UTF-8 text"
        )
        self.assertEqual(parse("-m", "café")["message"], "café")

    def test_a_port_out_of_range_is_a_usage_error(self) -> None:
        with self.assertRaises(UsageError) as caught:
            parse("--listen", "tcp:99999")
        self.assertEqual(
            str(caught.exception),
            "--listen 'tcp:99999': port 99999 is not from 0 to 65535",
        )

    def test_an_access_log_that_cannot_be_made_is_a_usage_error(self) -> None:
        missing = os.path.join(temporary_directory(self), "missing")
        cases = {
            f"{missing}/x.log": "there is no directory",
            ".": "is a directory",
            "x\0y": "holds a NUL",
        }
        for path, words in cases.items():
            with self.subTest(path=path):
                with self.assertRaises(UsageError) as caught:
                    parse("--access-log", path)
                self.assertTrue(str(caught.exception).startswith("--access-log: "))
                self.assertIn(words, str(caught.exception))
        self.assertFalse(os.path.exists(missing))

    def test_an_access_log_in_a_directory_is_taken_not_made(self) -> None:
        path = os.path.join(temporary_directory(self), "access.log")
        self.assertEqual(parse("--access-log", path)["access-log"], path)
        self.assertEqual(parse("--access-log", "-")["access-log"], "-")
        self.assertFalse(os.path.exists(path))

    def test_help_states_every_bound(self) -> None:
        bounds = {
            "delay": "--max-delay",
            "max-delay": "86400",
            "tick": "3600",
            "heartbeat": "3600",
            "shutdown-grace": "3600",
            "max-pending": "10,000,000",
            "idle-timeout": "86400",
            "workers": "64",
        }
        helps = {p[0]: p[3] for p in PARAMETERS}
        for option, bound in bounds.items():
            self.assertIn(bound, helps[option], option)
        # The defaults are within them, and every checked option has help.
        self.assertTrue(set(tap.CHECKS) <= set(helps))

    def test_version(self) -> None:
        output = io.StringIO()
        with redirect_stdout(output), self.assertRaises(SystemExit) as caught:
            parse("--version")
        self.assertEqual(caught.exception.code, 0)
        self.assertEqual(
            output.getvalue(),
            f"closedemo (twisted-close) {twisted_close.__version__}\n",
        )


class StartWarningTests(SynchronousTestCase):
    def tls_listen(self) -> str:
        return self_signed(Path(temporary_directory(self))).listen

    def warnings(self, *argv: str) -> list[str]:
        with capturedLogs() as events:
            tap.makeService(parse(*argv))
        return [formatEvent(e) for e in events if e["log_level"] is LogLevel.warn]

    def test_an_idle_timeout_at_or_below_the_max_delay_on_tls_warns(self) -> None:
        listen = self.tls_listen()
        [warning] = self.warnings("--listen", listen, "--idle-timeout", "60")
        self.assertIn("--idle-timeout 60 is not above --max-delay 60", warning)
        self.assertIn("HTTP/2", warning)
        self.assertEqual(self.warnings("--listen", listen), [])

    def test_no_warning_without_tls(self) -> None:
        argv = ("--listen", "tcp:0", "--idle-timeout", "10")
        self.assertEqual(self.warnings(*argv), [])


class ConnectionOptionsTests(SynchronousTestCase):
    def test_defaults_leave_on_a_half_close_and_wait_30_s_on_a_stall(self) -> None:
        options = parse()
        self.assertEqual(options["half-close"], "leave")
        self.assertEqual(options["stall-timeout"], 30.0)
        settings = tap.site_settings(options)
        self.assertEqual(
            (settings["half_close"], settings["stall_timeout"]), ("leave", 30.0)
        )

    def test_values_are_coerced_and_reach_the_ledger(self) -> None:
        options = parse("--half-close", "answer", "--stall-timeout", "2.5")
        service = tap.makeService(options)
        assert isinstance(service, MultiService)
        [listener] = [s for s in service if hasattr(s, "factory")]
        site = listener.factory
        delayed = site.resource.resource.delayed
        self.assertEqual(delayed.policy, ConnectionPolicy("answer", 2.5))
        self.assertIs(site.resource.resource.events.policy, delayed.policy)

    def test_bad_values_name_the_option(self) -> None:
        cases = {
            ("--half-close", "ignore"): "--half-close",
            ("--stall-timeout", "0"): "--stall-timeout",
            ("--stall-timeout", "soon"): "--stall-timeout",
        }
        assert_usage_errors(self, cases.items())
