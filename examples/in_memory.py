from twisted.internet.task import Clock

from twisted_close import DelayedResource, Ledger
from twisted_close.testing import InMemoryServer

clock = Clock()
ledger = Ledger()
server = InMemoryServer(
    DelayedResource("hello", delay=2, clock=clock, ledger=ledger), clock=clock
)

finished = server.get("/")
leaving = server.get("/slow")
server.advance(0.5)
leaving.close()  # the client leaves after half a second
server.advance(1.5)

assert finished.response is not None and finished.response.body == b"hello"
assert leaving.response is None
assert ledger.snapshot() == {
    "pending": 0,
    "completed": 1,
    "interrupted": 1,
    "rejected": 0,
    "server_ended": 0,
}
print(ledger.snapshot())
