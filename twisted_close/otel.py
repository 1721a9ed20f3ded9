"""
OpenTelemetry for the requests of a L{twisted_close.Ledger}: C{pip install
'.[otel]'} in a clone of twisted-close adds opentelemetry-api and -sdk.

Each request under L{RequestTracing.resource} is a server span, a child of
the caller's span when its C{traceparent} header names one.  When the
ledger tells its observers how the request ended, the span ends with the
outcome as attributes and as an event (C{twisted_close.outcome}): the
ending, the seconds it took, the pending work cancelled.  Calls to another
service made while rendering pass the trace on with L{trace_headers}, so the
interruptions of a chain A -> B are in one trace.

This is the only module that imports opentelemetry.
"""

from __future__ import annotations

import time
from typing import Any, cast

from opentelemetry import context, trace
from opentelemetry.trace.propagation.tracecontext import (
    TraceContextTextMapPropagator,
)
from twisted.python.components import proxyForInterface
from twisted.web.http_headers import Headers
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import Request

from ._ledger import Ledger
from ._outcome import Outcome
from ._text import describe_client, raw_text
from ._twisted.request import request_state

__all__ = ["RequestTracing", "outcome_attributes", "trace_headers"]

_PROPAGATOR = TraceContextTextMapPropagator()
_Key = tuple[str, str, str]


def outcome_attributes(outcome: Outcome) -> dict[str, str | int | float]:
    """
    The attributes a span and its event carry for C{outcome}.
    """
    attributes: dict[str, str | int | float] = {
        "twisted_close.ending": outcome.ending.code,
        "twisted_close.reason": outcome.reason,
        "twisted_close.elapsed": outcome.elapsed,
        "twisted_close.cancelled": outcome.cancelled,
        "twisted_close.detail": outcome.detail,
    }
    # Where the answer was (waiting, answering, delivering), when the
    # outcome says; an outcome from before phases has none.
    phase = getattr(outcome, "phase", "")
    if phase:
        attributes["twisted_close.phase"] = str(phase)
    return attributes


def trace_headers() -> Headers:
    """
    Headers that pass the current trace on to another service (W3C
    C{traceparent}), for C{treq.get(..., headers=)} or C{Agent.request}.
    Empty outside a span.
    """
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return Headers({name: [value] for name, value in carrier.items()})


class RequestTracing:
    """
    Server spans for the requests a L{Ledger} holds, ended by its observer
    API with each request's L{Outcome}.

    @ivar tracer: where the spans are made.
    """

    def __init__(
        self, ledger: Ledger, tracer_provider: trace.TracerProvider | None = None
    ) -> None:
        """
        @param tracer_provider: by default, OpenTelemetry's global one.
        """
        self.tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)
        # Open spans by the request's client, method and path, which its
        # outcome names too; oldest first (HTTP/2 streams share a client).
        self._open: dict[_Key, list[trace.Span]] = {}
        ledger.observe(self._ended)

    def resource(self, inner: IResource) -> IResource:
        """
        C{inner}, each of whose requests is a span: rendered inside it, so
        that work started while rendering (a coroutine, a call upstream) is
        in the span's context.
        """
        return _TracedResource(inner, self)

    def _begin(self, request: IRequest) -> tuple[_Key, trace.Span]:
        carrier = {
            name.decode("latin-1").lower(): values[-1].decode("latin-1")
            for name, values in request.requestHeaders.getAllRawHeaders()
        }
        method, path = raw_text(request.method), raw_text(request.path)
        span = self.tracer.start_span(
            f"{method} {path}",
            context=_PROPAGATOR.extract(carrier),
            kind=trace.SpanKind.SERVER,
            attributes={
                "http.request.method": method,
                "url.path": path,
                "client.address": describe_client(request),
            },
        )
        key = (describe_client(request), method, path)
        self._open.setdefault(key, []).append(span)
        return key, span

    def _rendered(self, request: IRequest, key: _Key, span: trace.Span) -> None:
        served = cast(Request, request)

        def unclaimed(result: object = None) -> None:
            # A request no watch held (a 404, a refusal) has no outcome.
            if self._take(key, span):
                span.set_attribute("http.response.status_code", served.code)
                span.end()

        if any(request_state(request)):
            unclaimed()  # notifyFinish() would never fire now
        else:
            # Asked after the watch's own: its outcome comes first.
            served.notifyFinish().addBoth(unclaimed)

    def _take(self, key: _Key, span: trace.Span | None = None) -> trace.Span | None:
        # The given span if still open, else (None) the oldest open one.
        spans = self._open.get(key, [])
        if span is None and spans:
            span = spans[0]
        if span is None or span not in spans:
            return None
        spans.remove(span)
        if not spans:
            del self._open[key]
        return span

    def _ended(self, outcome: Outcome) -> None:
        span = self._take((outcome.client, outcome.method, outcome.path))
        if span is None:
            return
        attributes = outcome_attributes(outcome)
        span.set_attributes(attributes)
        span.add_event("twisted_close.outcome", attributes)
        span.end(end_time=time.time_ns())


class _TracedResource(proxyForInterface(IResource)):  # type: ignore[misc]
    # The wrapped resource's children are traced by the same tracing.
    def __init__(self, original: IResource, tracing: RequestTracing) -> None:
        super().__init__(original)
        self._tracing = tracing

    def getChildWithDefault(self, name: bytes, request: IRequest) -> IResource:
        child = self.original.getChildWithDefault(name, request)
        return _TracedResource(child, self._tracing)

    def render(self, request: IRequest) -> Any:
        key, span = self._tracing._begin(request)
        token = context.attach(trace.set_span_in_context(span))
        try:
            return self.original.render(request)
        finally:
            context.detach(token)
            self._tracing._rendered(request, key, span)
