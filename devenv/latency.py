"""A loopback TCP proxy that adds network latency in front of a local server.

A registry on loopback answers in well under a millisecond, so a pass over thousands of
targets measures only CPU, never how the exporter spreads round trips over its per-host
concurrency. The proxy holds every chunk the client sends for ``delay`` seconds before
forwarding it (answers flow back at once): each HTTP request on a keep-alive connection
then costs one delay, as one round trip to a distant registry would. Chunks are held
side by side, not one after another, so a request split over several reads still costs
one delay and the order of bytes is kept.

One asyncio loop in a daemon thread serves every connection (hundreds at once are
cheap); leaving the context cancels them all and closes their sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
CHUNK = 64 * 1024


@contextmanager
def loopback_server(handler: Handler, backlog: int = 1024) -> Iterator[str]:
    """Serve ``handler`` on a free loopback port from a background thread; yields
    ``"127.0.0.1:PORT"``. The handler's writer is closed for it when it returns."""
    loop = asyncio.new_event_loop()
    live: set[asyncio.Task[None]] = set()

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            live.add(task)
        try:
            await handler(reader, writer)
        except (OSError, asyncio.CancelledError):
            pass  # a peer reset the connection, or the server is closing: nothing to report
        finally:
            live.discard(task)
            writer.close()

    server = loop.run_until_complete(
        asyncio.start_server(connected, "127.0.0.1", 0, backlog=backlog)
    )
    port = server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, name=f"loopback-{port}", daemon=True)
    thread.start()

    async def shutdown() -> None:
        server.close()
        for task in list(live):
            task.cancel()
        await asyncio.gather(*live, return_exceptions=True)
        await server.wait_closed()

    try:
        yield f"127.0.0.1:{port}"
    finally:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        if not thread.is_alive():
            loop.close()


async def _delayed(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float
) -> None:
    """Copy ``reader`` to ``writer``, each chunk ``delay`` seconds after it arrived."""
    loop = asyncio.get_running_loop()
    held: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def release() -> None:
        while True:
            due, data = await held.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    releasing = asyncio.ensure_future(release())
    try:
        while True:
            data = await reader.read(CHUNK)
            held.put_nowait((loop.time() + delay, data))
            if not data:
                break
        await releasing
    finally:
        releasing.cancel()


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(CHUNK):
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()


@contextmanager
def latency_proxy(target: str, delay: float) -> Iterator[str]:
    """Forward connections to ``target`` (``host:port``) with ``delay`` seconds added to
    every chunk the client sends; yields the proxy's ``"127.0.0.1:PORT"``."""
    host, _, port = target.rpartition(":")

    async def proxy(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(host, int(port))
        except OSError:
            return  # the target is down: the client sees the connection closed
        pumps = {
            asyncio.ensure_future(_delayed(client_r, server_w, delay)),
            asyncio.ensure_future(_copy(server_r, client_w)),
        }
        try:
            done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if not task.cancelled():
                    task.exception()  # retrieved: a reset on either side ends both
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            server_w.close()

    with loopback_server(proxy) as address:
        yield address
