from twisted.internet.task import deferLater
from twisted.web.server import Request

from twisted_close import AsyncResource


class Search(AsyncResource):
    isLeaf = True
    log: list[str] = []

    async def render_GET(self, request: Request) -> bytes:
        try:
            await deferLater(self.clock, 3.0, lambda: None)  # the slow part
            return b"results"
        finally:
            self.log.append("cleaned up")  # runs on cancellation too
