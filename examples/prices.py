import json

from twisted.internet.task import Clock

from twisted_close import EventStreamResource, Ledger, ServerSentEvent


def prices(n: int, now: float) -> ServerSentEvent | None:
    if n % 2:  # nothing new on odd ticks: send nothing
        return None
    return ServerSentEvent(json.dumps({"price": 100 + n}), event="price", id=str(n))


clock = Clock()  # the reactor in a real server
ledger = Ledger()
events = EventStreamResource(prices, tick=0.5, clock=clock, ledger=ledger)
