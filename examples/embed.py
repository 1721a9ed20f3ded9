import sys

from twisted.logger import globalLogBeginner, textFileLogObserver
from twisted.web.resource import Resource
from twisted.web.server import Site

from twisted_close import DelayedResource, Ledger

ledger = Ledger()  # pending, completed, interrupted, rejected
root = Resource()
root.putChild(b"slow", DelayedResource("<p>done</p>", delay=2.0, ledger=ledger))
site = Site(root)

if __name__ == "__main__":
    from twisted.internet import endpoints, reactor

    # Without an observer, the interruptions are reported to nobody.
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    where = sys.argv[1] if len(sys.argv) > 1 else "tcp:8080:interface=127.0.0.1"
    endpoints.serverFromString(reactor, where).listen(site)
    reactor.run()
