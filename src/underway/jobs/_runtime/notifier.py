"""Wakes the producers when another process writes jobs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from underway._aio import cancel_and_wait
from underway.jobs.engines.base import Engine

__all__ = ["Notifier"]

_log = logging.getLogger("underway.jobs")


class Notifier:
    """Waits on the engine's change signal and wakes every producer when it fires.

    After each wait it also reads the control signals published since (pause, resume,
    scale, cancel) and hands each to ``on_signal``.

    On SQLite the signal is ``PRAGMA data_version``; when it cannot be read the producers
    still poll on their own, so no job waits longer than the poll interval.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        wake_all: Callable[[], None],
        on_signal: Callable[[dict[str, Any]], None],
        timeout: float = 1.0,
    ) -> None:
        self.engine = engine
        self.wake_all = wake_all
        self.on_signal = on_signal
        self.timeout = timeout
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start listening."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="underway.notifier")

    async def stop(self, timeout: float | None = None) -> None:
        """Stop listening (at once: ``timeout`` is not needed)."""
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _loop(self) -> None:
        while True:
            try:
                if await self.engine.wait_for_change(self.timeout):
                    self.wake_all()
                for signal in await self.engine.signals():
                    self.on_signal(signal)
            except Exception as exc:
                _log.warning("change notifications failed (%s); producers keep polling", exc)
                await asyncio.sleep(self.timeout)
