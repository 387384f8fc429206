"""A registry that accepts connections and never answers, for fault-isolation checks.

The worst registry is not one that refuses connections (that fails fast) but one that
accepts, reads the request and then says nothing: every request to it costs the client's
full read timeout. Targets on a healthy registry must not wait behind it. This server
accepts on loopback, reads whatever it is sent and never writes a byte; a connection ends
only when the client closes it or the context exits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from devenv.latency import CHUNK, loopback_server


async def _swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while await reader.read(CHUNK):
        pass


@contextmanager
def hung_registry() -> Iterator[str]:
    """Yields ``"127.0.0.1:PORT"`` of a server that reads and never answers."""
    with loopback_server(_swallow) as address:
        yield address
