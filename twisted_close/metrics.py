"""
Prometheus metrics read from a L{Ledger}: C{pip install 'twisted-close[metrics]'}.

The counters are the ledger's own numbers, read when scraped, so they are
exact and there is no second bookkeeping; the histogram of time until an
interruption is fed by the ledger's outcomes.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from twisted.web.resource import IResource

from ._ledger import Ending, Ledger, Outcome

__all__ = ["LedgerCollector", "metrics_registry", "metrics_resource"]

CLIENT_ENDINGS = [e for e in Ending if e.interrupted and not e.by_server]
SERVER_ENDINGS = [e for e in Ending if e.by_server]
REJECTIONS = ["bad request", "overloaded", "shutting down"]
BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class LedgerCollector(Collector):
    """
    The ledger's counters as Prometheus metrics, named C{<prefix>_...}.
    """

    def __init__(self, ledger: Ledger, prefix: str = "twisted_close") -> None:
        self.ledger = ledger
        self.prefix = prefix

    def collect(self) -> Iterator[Metric]:
        ledger, p = self.ledger, self.prefix
        yield CounterMetricFamily(
            f"{p}_requests_completed",
            "Requests answered in full.",
            value=ledger.completed,
        )
        yield _by_label(
            f"{p}_requests_interrupted",
            "Requests cut short by their client, by how the connection ended.",
            "ending",
            {e.code: ledger.interruptions[e] for e in CLIENT_ENDINGS},
        )
        yield _by_label(
            f"{p}_requests_server_ended",
            "Requests cut short by the server (shutdown, closed connections).",
            "ending",
            {e.code: ledger.server_endings[e] for e in SERVER_ENDINGS},
        )
        reasons = sorted({*REJECTIONS, *ledger.rejections})
        yield _by_label(
            f"{p}_requests_rejected",
            "Requests refused at once, by reason.",
            "reason",
            {r.replace(" ", "_"): ledger.rejections[r] for r in reasons},
        )
        yield GaugeMetricFamily(
            f"{p}_requests_pending",
            "Requests holding pending work now.",
            value=ledger.pending,
        )


def _by_label(
    name: str, help: str, label: str, counts: dict[str, int]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, help, labels=[label])
    for value, count in counts.items():
        family.add_metric([value], count)
    return family


def metrics_registry(
    ledger: Ledger, prefix: str = "twisted_close"
) -> CollectorRegistry:
    """
    A registry with the ledger's counters and a histogram of the seconds
    until a client interrupted its request.
    """
    registry = CollectorRegistry()
    registry.register(LedgerCollector(ledger, prefix))
    until = Histogram(
        f"{prefix}_interruption_seconds",
        "Seconds from a request's start until its client interrupted it.",
        buckets=BUCKETS,
        registry=registry,
    )

    def observe(outcome: Outcome) -> None:
        if outcome.ending.interrupted and not outcome.ending.by_server:
            until.observe(outcome.elapsed)

    ledger.observe(observe)
    return registry


def metrics_resource(registry: CollectorRegistry) -> IResource:
    """
    prometheus-client's own Twisted resource for C{registry}.  It answers
    from the reactor's thread pool, so it needs a running reactor.
    """
    # It imports the global reactor: only import it when a site is built.
    from prometheus_client.twisted import MetricsResource

    resource: IResource = MetricsResource(registry)  # type: ignore[no-untyped-call]
    return resource
