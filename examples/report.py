from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from twisted_close import Ledger, cancel_on_disconnect


class Report(Resource):
    isLeaf = True

    def __init__(self, clock: IReactorTime, ledger: Ledger) -> None:
        super().__init__()
        self.clock = clock  # the reactor; a Clock in tests
        self.ledger = ledger

    def render_GET(self, request: Request) -> int:
        def answer() -> None:
            request.write(b"report ready")
            request.finish()

        call = self.clock.callLater(5, answer)
        cancel_on_disconnect(request, call, ledger=self.ledger, clock=self.clock)
        return NOT_DONE_YET
