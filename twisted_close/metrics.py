"""
Prometheus metrics read from a L{Ledger}: C{pip install '.[metrics]'} in a
clone of twisted-close adds prometheus-client.

Every figure is the ledger's own, read when scraped, so it is exact and
there is no second bookkeeping; with several worker processes the source
is their merged counters.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from twisted.web.resource import IResource

from ._ledger import WAIT_BUCKETS, CountsSource
from ._outcome import Ending, Rejection

__all__ = ["LedgerCollector", "metrics_registry", "metrics_resource"]

CLIENT_ENDINGS = [e for e in Ending if e.interrupted and not e.by_server]
SERVER_ENDINGS = [e for e in Ending if e.by_server]


def _by_label(
    name: str, help: str, label: str, counts: dict[str, int]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, help, labels=[label])
    for value, count in counts.items():
        family.add_metric([value], count)
    return family


class LedgerCollector(Collector):
    """
    The ledger's counters as Prometheus metrics, named C{<prefix>_...}.
    """

    def __init__(self, source: CountsSource, prefix: str = "twisted_close") -> None:
        self.source = source
        self.prefix = prefix

    def collect(self) -> Iterator[Metric]:
        totals, p = self.source.totals(), self.prefix
        yield CounterMetricFamily(
            f"{p}_requests_completed",
            "Requests answered in full.",
            value=totals.completed,
        )
        yield _by_label(
            f"{p}_requests_interrupted",
            "Requests cut short by their client, by how the connection ended.",
            "ending",
            {e.code: totals.interruptions[e] for e in CLIENT_ENDINGS},
        )
        yield _by_label(
            f"{p}_requests_server_ended",
            "Requests cut short by the server (shutdown, closed connections).",
            "ending",
            {e.code: totals.server_endings[e] for e in SERVER_ENDINGS},
        )
        by_phase = CounterMetricFamily(
            f"{p}_requests_cut_short_by_phase",
            "Requests cut short (by either side), by how and by where their "
            "answer was: waiting (nothing sent), answering (part sent), "
            "delivering (all handed over, not acknowledged).",
            labels=["ending", "phase"],
        )
        for (ending, phase), count in sorted(
            totals.phases.items(), key=lambda item: (item[0][0].code, item[0][1])
        ):
            by_phase.add_metric([ending.code, phase], count)
        yield by_phase
        yield _by_label(
            f"{p}_requests_rejected",
            "Requests refused at once, by reason.",
            "reason",
            {r.code: totals.rejections[r] for r in Rejection},
        )
        yield GaugeMetricFamily(
            f"{p}_requests_pending",
            "Requests holding pending work now.",
            value=totals.pending,
        )
        cumulative, buckets = 0, []
        bounds = [*WAIT_BUCKETS, "+Inf"]
        for bound, count in zip(bounds, totals.wait_buckets, strict=True):
            cumulative += count
            buckets.append((str(bound), cumulative))
        yield HistogramMetricFamily(
            f"{p}_interruption_seconds",
            "Seconds from a request's start until its client interrupted it.",
            buckets=buckets,
            sum_value=totals.wait_sum,
        )


def metrics_registry(
    source: CountsSource, prefix: str = "twisted_close"
) -> CollectorRegistry:
    """
    A registry of the counters of C{source}, a L{twisted_close.Ledger} or
    the merged counters of several workers, and of this process's
    descriptors, memory and CPU (C{process_open_fds}, C{process_max_fds},
    ...; on Linux), which an alert on descriptors running short reads.
    """
    registry = CollectorRegistry()
    registry.register(LedgerCollector(source, prefix))
    ProcessCollector(registry=registry)
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
