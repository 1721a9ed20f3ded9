from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from twisted.web.resource import Resource
from twisted.web.server import Site

from twisted_close import DelayedResource, Ledger
from twisted_close.otel import RequestTracing

provider = TracerProvider()  # or your exporter's: OTLP, Jaeger, ...
provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
ledger = Ledger()
tracing = RequestTracing(ledger, provider)
root = Resource()
root.putChild(b"slow", DelayedResource("<p>done</p>", delay=2.0, ledger=ledger))
site = Site(tracing.resource(root))  # every request below root is a span

if __name__ == "__main__":
    from twisted.internet import endpoints, reactor

    endpoints.serverFromString(reactor, "tcp:8080:interface=127.0.0.1").listen(site)
    reactor.run()
