"""
The public API of C{twisted_close}: exactly the library's names, and an
import that has no effect on the program that embeds it.
"""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
import textwrap
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

import twisted_close

from .helpers import temporary_directory

LIBRARY = Path(twisted_close.__file__).parent

PUBLIC = [
    "AllowedHosts",
    "HEARTBEAT",
    "Delivery",
    "HalfClose",
    "SAFE_METHODS",
    "AsyncResource",
    "Cancellable",
    "ConnectionGuard",
    "ConnectionPolicy",
    "DelayError",
    "DelayedResource",
    "Ending",
    "EventStream",
    "EventStreamResource",
    "ForwardedFor",
    "TrustedProxies",
    "forwarded_client",
    "GracefulDrain",
    "HostCheck",
    "Ledger",
    "Limits",
    "Outcome",
    "Rejection",
    "RequestWatch",
    "ServerSentEvent",
    "StreamSource",
    "WorkResource",
    "cancel_on_disconnect",
    "classify",
    "bound_request_bodies",
    "counter_events",
    "guard_connections",
    "is_cancellation",
    "parse_delay",
    "read_body",
    "__version__",
]


def _top_level_imports(path: Path) -> set[str]:
    """
    The modules of ours that C{path} imports when it is imported (lazy
    imports inside functions are left out: they make no cycle at import).
    """
    package = ".".join(path.relative_to(LIBRARY.parent).with_suffix("").parts)
    if path.name == "__init__.py":
        package = package.removesuffix(".__init__")
    else:
        package = package.rpartition(".")[0]
    found = set()
    for node in ast.parse(path.read_text("utf-8")).body:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0]
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            if name.startswith("twisted_close"):
                found.add(name)
        elif isinstance(node, ast.Import):
            found.update(
                a.name for a in node.names if a.name.startswith("twisted_close")
            )
    return found


def _library_modules() -> dict[str, set[str]]:
    graph = {}
    for path in sorted([*LIBRARY.glob("*.py"), *LIBRARY.glob("_twisted/*.py")]):
        parts = path.relative_to(LIBRARY.parent).with_suffix("").parts
        name = ".".join(parts).removesuffix(".__init__")
        graph[name] = _top_level_imports(path)
    return graph


PUBLIC_MODULES = {
    "twisted_close.guard": ["guard_of", "peer_timeout_supported", "set_peer_timeout"],
    "twisted_close.ledger": ["WAIT_BUCKETS", "CountsSource", "LimitCounts", "Totals"],
    "twisted_close.reactors": [
        "accept_few",
        "asyncio_event_loop",
        "leave_socket_open",
        "tcp_endpoint_address",
    ],
    "twisted_close.streams": [
        "DEFAULT_MAX_UNSENT",
        "PushStream",
        "StreamsResource",
        "positive_seconds",
        "stream_headers",
    ],
    "twisted_close.web": [
        "abort_request",
        "describe_address",
        "describe_client",
        "not_allowed",
        "plain_error",
        "printable",
        "raw_text",
        "refusal",
        "request_state",
    ],
}


def _private_imports(path: Path) -> list[str]:
    """
    Every import in C{path} (a module of the app) of a private module or
    name of the library: C{from .._x import y}, C{from .. import _y},
    C{from twisted_close._x import y}, lazy imports included.
    """
    found = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                continue  # the app's own modules
            module = node.module or ""
            if node.level == 0 and not module.startswith("twisted_close"):
                continue
            parts = module.split(".")
            names = [a.name for a in node.names]
            if any(p.startswith("_") for p in parts) or any(
                n.startswith("_") and n != "__version__" for n in names
            ):
                found.append(f"{path.name}:{node.lineno}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("twisted_close") and any(
                    p.startswith("_") for p in alias.name.split(".")
                ):
                    found.append(f"{path.name}:{node.lineno}")
    return found


class AppOnPublicAPITests(SynchronousTestCase):
    def test_the_app_imports_nothing_private_of_the_library(self) -> None:
        app = sorted((LIBRARY / "closedemo").glob("*.py"))
        self.assertTrue(app)
        found = [line for path in app for line in _private_imports(path)]
        self.assertEqual(found, [])

    def test_a_private_import_would_be_found(self) -> None:
        path = Path(temporary_directory(self)) / "bad.py"
        path.write_text(
            "from .._watch import RequestWatch\n"
            "from .. import _version\n"
            "from twisted_close.web import printable\n"
            "from ..streams import stream_headers\n"
            "import twisted_close._ledger\n"
        )
        self.assertEqual(_private_imports(path), ["bad.py:1", "bad.py:2", "bad.py:5"])

    def test_the_public_modules_export_the_librarys_own_names(self) -> None:
        import importlib

        for name, exported in PUBLIC_MODULES.items():
            module = importlib.import_module(name)
            self.assertEqual(sorted(module.__all__), sorted(exported), name)
            self.assertTrue(module.__doc__, name)
            for export in module.__all__:
                value = getattr(module, export)
                if callable(value):
                    self.assertTrue(value.__module__.startswith("twisted_close"))
                    self.assertTrue(inspect.getdoc(value), f"{name}.{export}")
        # Nothing of the demo in what the library offers.
        offered = [*twisted_close.__all__]
        for exported in PUBLIC_MODULES.values():
            offered += exported
        self.assertEqual([n for n in offered if "demo" in n.lower()], [])


class ExportsTests(SynchronousTestCase):
    def test_all_is_the_public_api(self) -> None:
        self.assertEqual(sorted(twisted_close.__all__), sorted(PUBLIC))

    def test_every_name_is_the_librarys_own(self) -> None:
        for name in twisted_close.__all__:
            value = getattr(twisted_close, name)
            if not (inspect.isclass(value) or inspect.isfunction(value)):
                continue  # a constant, or a type alias
            module = value.__module__
            self.assertTrue(module.startswith("twisted_close"), (name, module))
            self.assertNotIn("closedemo", module, name)


class LayersTests(SynchronousTestCase):
    def test_no_library_module_imports_the_app(self) -> None:
        for module, imports in _library_modules().items():
            app = [i for i in imports if i.startswith("twisted_close.closedemo")]
            self.assertEqual(app, [], module)

    def test_no_import_cycles_among_library_modules(self) -> None:
        graph = _library_modules()
        # twisted_close/__init__ re-exports: the package itself is the top.
        edges = {
            m: {i for i in imports if i in graph and i != "twisted_close"}
            for m, imports in graph.items()
        }
        done: set[str] = set()

        def visit(module: str, path: list[str]) -> None:
            if module in path:
                cycle = [*path[path.index(module) :], module]
                self.fail("import cycle: " + " -> ".join(cycle))
            if module in done:
                return
            for imported in sorted(edges[module]):
                visit(imported, [*path, module])
            done.add(module)

        for module in sorted(edges):
            visit(module, [])

    def test_the_lower_layers_import_nothing_of_ours_above_them(self) -> None:
        graph = _library_modules()
        self.assertEqual(graph["twisted_close._outcome"], set())
        self.assertEqual(graph["twisted_close._text"], set())
        self.assertEqual(
            graph["twisted_close._report"],
            {"twisted_close._outcome", "twisted_close._text"},
        )
        # The rules of endings are pure: plain values in, an Ending out.
        self.assertEqual(graph["twisted_close._endings"], {"twisted_close._outcome"})
        self.assertEqual(graph["twisted_close._linux"], set())
        # Twisted's internals read facts; they decide nothing of ours.
        below = {"twisted_close._endings", "twisted_close._linux"}
        for module, imported in graph.items():
            if module.startswith("twisted_close._twisted."):
                others = {
                    m for m in imported if not m.startswith("twisted_close._twisted")
                }
                self.assertLessEqual(others, below, module)


EMBEDDING = textwrap.dedent(
    """
    import os, signal, sys

    def mine(number, frame):
        pass

    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, mine)
    before = sorted(os.listdir("."))

    import twisted_close, twisted_close.logs, twisted_close.testing

    assert "twisted.internet.reactor" not in sys.modules, "a reactor at import"
    assert not [m for m in sys.modules if "closedemo" in m], "the app at import"

    from twisted.internet import reactor

    ledger = twisted_close.Ledger(reactor)
    drain = twisted_close.GracefulDrain(ledger, reactor, grace=0.1)
    drain.startService()

    def stop():
        drain.stopService().addCallback(lambda _: reactor.stop())

    reactor.callWhenRunning(stop)
    reactor.run(installSignalHandlers=False)
    for number in (signal.SIGTERM, signal.SIGINT):
        assert signal.getsignal(number) is mine, signal.Signals(number).name
    assert sorted(os.listdir(".")) == before, "files were made"
    print("untouched")
    """
)


class SideEffectsTests(SynchronousTestCase):
    def test_an_embedding_program_keeps_its_signals_files_and_reactor(self) -> None:
        workdir = Path(temporary_directory(self))
        done = subprocess.run(
            [sys.executable, "-c", EMBEDDING],
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(done.stdout.strip(), "untouched")


def test_every_twisted_internal_is_pinned_in_its_own_file() -> None:
    """
    Each function and class a module of L{twisted_close._twisted} (or
    L{twisted_close._linux}) exports is called in that module's own test
    file: a new reliance on Twisted cannot come without its pin.
    """
    import importlib
    import inspect
    import pkgutil
    import re
    from pathlib import Path

    import twisted_close._twisted as package

    here = Path(__file__).resolve().parent
    names = [f"_twisted.{m.name}" for m in pkgutil.iter_modules(package.__path__)]
    missing = []
    for name in [*names, "_linux"]:
        module = importlib.import_module(f"twisted_close.{name}")
        pins = here / f"test_twisted_{name.rsplit('.', 1)[-1].lstrip('_')}.py"
        text = pins.read_text(encoding="utf-8")
        for export in module.__all__:
            value = getattr(module, export)
            # A function called, not merely imported: "name(" in a test; a
            # class (a base, a typing Protocol) named in a test.
            if inspect.isfunction(value):
                if not re.search(rf"\b{export}\(", text):
                    missing.append(f"{name}.{export}")
            elif inspect.isclass(value):
                if len(re.findall(rf"\b{export}\b", text)) < 2:
                    missing.append(f"{name}.{export}")
    assert missing == []
