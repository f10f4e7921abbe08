"""The connection the node's heartbeats go through, outside the pool.

After an outage the pool reconnects with a growing delay of its own, and its connections
may all be busy with fetches and acks: a live node would then stay silent for longer than
the outage, and look dead to the other nodes. Heartbeats therefore have a connection of
their own, opened again on the next heartbeat whenever the last one failed, and every
heartbeat is bounded in time (by the heartbeat's own interval, and here at the latest after
10 s): a write stuck on a connection that died silently is given up, so a node heartbeats
within about two intervals of the database being reachable again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from contextlib import suppress
from typing import Any

import psycopg

from underway.jobs.engines.postgres._pool import AConn, Pools, arows
from underway.jobs.engines.postgres._url import database_error

__all__ = ["Beat"]

_TIMEOUT = 10.0  # seconds one heartbeat (connecting included) may take


class Beat:
    """Runs one statement at a time on a dedicated connection, reopened after a failure."""

    def __init__(self, pools: Pools, *, timeout: float = _TIMEOUT) -> None:
        self._pools = pools
        self._timeout = timeout
        self._conn: AConn | None = None
        self._lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def run(self, sql: str, params: Mapping[str, Any]) -> None:
        """Execute ``sql``; on any failure the connection is dropped and the error raised.

        Raises:
            DatabaseError: The database could not be reached or the statement failed (a
                timeout included).
        """
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a connection of an ended loop cannot serve this one
            await self._drop()
            self._lock, self._loop = asyncio.Lock(), loop
        async with self._lock:
            try:
                async with asyncio.timeout(self._timeout):
                    if self._conn is None or self._conn.closed:
                        self._conn = await self._pools.direct()
                    await arows(self._conn, sql, dict(params))
            except (psycopg.Error, OSError, TimeoutError) as exc:
                await self._drop()
                raise database_error(exc, self._pools.options.shown) from exc
            except BaseException:
                await self._drop()  # cancelled mid-statement: the connection is in doubt
                raise

    async def close(self) -> None:
        """Close the connection. Idempotent."""
        if self._loop is not asyncio.get_running_loop():
            await self._drop()  # opened on an ended loop: its lock belongs there
            return
        async with self._lock:
            await self._drop()

    async def _drop(self) -> None:
        # Closing only ends the libpq connection: it does not need the loop it was opened on.
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(Exception):
                await conn.close()
