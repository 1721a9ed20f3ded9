"""aiohttp peer: C{handler_cancellation=True} cancels the handler when the client
leaves; the C{CancelledError} out of C{asyncio.sleep} is counted.

Usage: python aiohttp_server.py PORT
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web

counts = {"pending": 0, "completed": 0, "interrupted": 0}


async def stats(request: web.Request) -> web.Response:
    return web.json_response(counts)


async def delayed(request: web.Request) -> web.Response:
    delay = float(request.query.get("delay", "0"))
    counts["pending"] += 1
    try:
        await asyncio.sleep(delay)
    except asyncio.CancelledError:
        counts["interrupted"] += 1
        raise
    finally:
        counts["pending"] -= 1
    counts["completed"] += 1
    return web.Response(body=b"hello", content_type="text/html", charset="utf-8")


async def main(port: int) -> None:
    app = web.Application()
    app.router.add_get("/stats", stats)
    app.router.add_get("/{tail:.*}", delayed)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
