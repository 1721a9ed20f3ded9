"""
The twistd plugin: options, the service it makes, and its discovery.
"""

from __future__ import annotations

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IServiceMaker, MultiService
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactor
from twisted.logger import capturedLogs, formatEvent
from twisted.plugin import IPlugin, getPlugins
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from twisted_close._drain import GracefulDrain
from twisted_close.closedemo import tap
from twisted_close.closedemo.descriptors import DescriptorRoom
from twisted_close.closedemo.signals import QuietRepeatedStops


def parse(*argv: str) -> tap.Options:
    options = tap.Options()
    options.parseOptions(list(argv))
    return options


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
        for argv, option in cases.items():
            with self.subTest(argv=argv):
                with self.assertRaises(UsageError) as caught:
                    parse(*argv)
                message = str(caught.exception)
                self.assertTrue(message.startswith(option), message)
                self.assertNotIn("\n", message)

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
        drain, room, *listeners, quiet = list(service)
        # Services stop in reverse: the second signal is quieted first, the
        # ports close next, then the drain runs.
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
