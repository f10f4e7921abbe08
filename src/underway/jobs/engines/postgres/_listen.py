"""One dedicated PostgreSQL connection that LISTENs for the engine's notifications.

It runs as a task: connect (autocommit), LISTEN on every channel, hand each notification to
a callback. A connection that fails, or stays silent and then does not answer a ping, is
closed and opened again with a growing delay (up to a few seconds); meanwhile the engine's
callers simply time out and poll. Every (re)connection is reported, since notifications
sent while no connection listened are lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from contextlib import suppress

import psycopg

from underway._aio import cancel_and_wait
from underway.jobs.engines.postgres._sql import quote_ident

__all__ = ["Listener"]

_log = logging.getLogger("underway.jobs")


class Listener:
    """LISTENs on ``channels`` and calls ``on_notify(channel, payload)`` for each notification.

    Args:
        dsn: The driver's connection string.
        channels: The channels to listen on.
        on_notify: Called on the event loop for each notification.
        on_connected: Called after each successful (re)connection.
        shown: The database as shown in log messages (no password).
        ping_every: Seconds of silence after which the connection is checked.
        max_delay: The longest wait between reconnection attempts.
    """

    def __init__(
        self,
        dsn: str,
        channels: Sequence[str],
        *,
        on_notify: Callable[[str, str], None],
        on_connected: Callable[[], None],
        shown: str,
        ping_every: float = 5.0,
        max_delay: float = 5.0,
    ) -> None:
        self.dsn = dsn
        self.channels = tuple(channels)
        self.on_notify = on_notify
        self.on_connected = on_connected
        self.shown = shown
        self.ping_every = ping_every
        self.max_delay = max_delay
        self.connected = False
        self._task: asyncio.Task[None] | None = None
        self._tried = asyncio.Event()
        self._failing = False

    async def start(self, wait: float) -> None:
        """Start listening; wait up to ``wait`` seconds for the first connection attempt."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="underway.pg.listener")
        with suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self._tried.wait()

    async def stop(self) -> None:
        """Stop listening and close the connection."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        self.connected = False

    async def _run(self) -> None:
        delay = 0.1
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.dsn, autocommit=True, connect_timeout=5
                )
            except (psycopg.Error, OSError) as exc:
                self._report(exc, delay)
            else:
                try:
                    await self._listen(conn)
                    delay = 0.1
                    await self._consume(conn)
                except (psycopg.Error, OSError, TimeoutError) as exc:
                    self._report(exc, delay)
                finally:
                    self.connected = False
                    with suppress(Exception):
                        await conn.close()
            self._tried.set()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_delay)

    async def _listen(self, conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
        for channel in self.channels:
            await conn.execute(f"LISTEN {quote_ident(channel)}")
        self.connected = True
        if self._failing:
            _log.info("notifications from %s work again", self.shown)
            self._failing = False
        self._tried.set()
        self.on_connected()

    async def _consume(self, conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
        while True:
            heard = False
            async for note in conn.notifies(timeout=self.ping_every):
                heard = True
                self.on_notify(note.channel, note.payload)
            if not heard:  # silent: make sure the connection still answers
                async with asyncio.timeout(self.ping_every):
                    await conn.execute("SELECT 1")

    def _report(self, exc: BaseException, delay: float) -> None:
        if not self._failing:
            _log.warning(
                "notifications from %s stopped (%s); polling meanwhile, reconnecting",
                self.shown,
                str(exc).strip() or type(exc).__name__,
            )
            self._failing = True
        else:
            _log.debug("reconnecting to %s in %.1fs: %s", self.shown, delay, exc)
