"""
Shared fixtures for the deterministic tests.
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet.endpoints import quoteStringArgument
from twisted.internet.interfaces import IPushProducer
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.internet.task import Clock
from twisted.logger import LogEvent, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from twisted_close import DelayedResource, Ledger, Limits
from twisted_close.closedemo.site import build_site
from twisted_close.testing import Connection, InMemoryServer

ZERO = {
    "pending": 0,
    "completed": 0,
    "interrupted": 0,
    "rejected": 0,
    "server_ended": 0,
}
"""The ledger's counters (and C{/stats}) before any request."""


def delayed_server(
    delay: float = 2.0, max_delay: float = 60.0, body: str = "hello"
) -> tuple[InMemoryServer, DelayedResource]:
    """
    A L{DelayedResource} served in memory on a fresh clock.
    """
    clock = Clock()
    resource = DelayedResource(
        body, delay, max_delay=max_delay, clock=clock, ledger=Ledger()
    )
    return InMemoryServer(resource, clock=clock), resource


def demo_server(
    delay: float = 2.0,
    *,
    tick: float = 1.0,
    max_pending: int | None = None,
    idle_timeout: float | None = 60.0,
    **settings: Any,
) -> tuple[InMemoryServer, Ledger]:
    """
    The closedemo site served in memory on a fresh clock; C{settings} are
    more of L{build_site}'s.
    """
    clock = Clock()
    caps = ["max_streams", "max_streams_per_client", "max_pending_per_client"]
    limits = Limits(
        max_pending=max_pending, **{n: settings.pop(n) for n in caps if n in settings}
    )
    ledger = Ledger(clock, limits=limits)
    site = build_site(
        clock=clock,
        ledger=ledger,
        delay=delay,
        tick=tick,
        idle_timeout=idle_timeout,
        **settings,
    )
    return InMemoryServer(site, clock=clock), ledger


def serve(
    *, max_pending: int | None = None, idle_timeout: float | None = 60.0
) -> tuple[InMemoryServer, Ledger]:
    """
    The closedemo site as the operating tests use it: 2 s answers, events
    every 0.5 s.
    """
    return demo_server(2, tick=0.5, max_pending=max_pending, idle_timeout=idle_timeout)


def get_request(path: str, version: str = "1.1") -> bytes:
    """
    The bytes of a GET of C{path}, with a Host header, over HTTP/C{version}.
    """
    return f"GET {path} HTTP/{version}\r\nHost: localhost\r\n\r\n".encode("ascii")


def lines(events: Sequence[LogEvent], prefix: str) -> list[str]:
    """
    The log lines, formatted, that start with C{prefix}.
    """
    return [t for e in events if (t := formatEvent(e)).startswith(prefix)]


def temporary_directory(case: SynchronousTestCase) -> str:
    """
    A new directory, removed after C{case}; not trial's C{mktemp()}, which
    under pytest would write into the source tree.
    """
    directory = tempfile.mkdtemp()
    case.addCleanup(shutil.rmtree, directory)
    return directory


def channel(client: Connection) -> IPushProducer:
    """
    The producer registered with the client's transport: the HTTPChannel,
    which passes the transport's pause and resume on to the request's.
    """
    producer = client.transport.producer
    assert producer is not None
    return cast(IPushProducer, producer)


def our_calls(server: InMemoryServer) -> list[float]:
    """
    When the pending answers are due: the clock's calls, less the channels'
    idle timeouts (those belong to Twisted, not to us).
    """
    return sorted(
        call.getTime()
        for call in server.clock.getDelayedCalls()
        if getattr(getattr(call, "func", None), "__name__", "") == "_answer"
    )


@dataclass(frozen=True)
class TLSFiles:
    key: Path
    cert: Path

    @property
    def listen(self) -> str:
        """
        The strports description of a TLS port on 127.0.0.1 with these files.
        """
        key = quoteStringArgument(str(self.key))
        cert = quoteStringArgument(str(self.cert))
        return f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"

    def client_options(self) -> Any:
        """
        Client TLS options that trust only this certificate and offer C{h2}.
        """
        trusted = Certificate.loadPEM(self.cert.read_bytes())
        return optionsForClientTLS(
            "localhost", trustRoot=trusted, acceptableProtocols=[b"h2"]
        )


def self_signed(directory: Path) -> TLSFiles:
    """
    A self-signed certificate for localhost and 127.0.0.1 and its key, as
    PEM files in C{directory}.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    files = TLSFiles(key=directory / "key.pem", cert=directory / "cert.pem")
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return files


def replaced_once(text: str, replacements: dict[str, str], name: str) -> str:
    """
    C{text} with each key of C{replacements} replaced by its value; each
    must occur in C{text} (the file C{name}) exactly once.
    """
    for old, new in replacements.items():
        assert text.count(old) == 1, f"{name} should have {old!r} once"
        text = text.replace(old, new)
    return text
