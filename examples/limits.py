from twisted.web.resource import Resource
from twisted.web.server import Site

from twisted_close import EventStreamResource, HostCheck, Ledger, Limits

ledger = Ledger(
    limits=Limits(
        max_pending=1000,
        max_streams=500,
        max_streams_per_client=4,
        max_pending_per_client=50,
    ),
)
root = Resource()
root.putChild(b"events", EventStreamResource(tick=1.0, ledger=ledger))
site = Site(HostCheck(root, allowed=["*.example.com"]))
