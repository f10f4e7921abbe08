"""A component that does one short piece of work every ``interval`` seconds."""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable

from underway._aio import cancel_and_wait

__all__ = ["Periodic"]

_log = logging.getLogger("underway.jobs")
_MAX_BACKOFF = 30.0


class Periodic(ABC):
    """Runs :meth:`tick` every ``interval`` seconds until stopped.

    A failing tick is logged and retried with a growing delay (up to 30 s); the component
    never dies of it, so a locked or briefly unreachable database does not stop a node.
    """

    name = "periodic"
    backoff = True

    def __init__(self, interval: float, *, enabled: Callable[[], bool] | None = None) -> None:
        self.interval = interval
        self.enabled = enabled
        self._task: asyncio.Task[None] | None = None
        self.failures = 0
        self.passes = 0  # ticks that ran to the end

    @abstractmethod
    async def tick(self) -> None:
        """One pass of the component's work."""

    async def start(self) -> None:
        """Start the loop (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=f"underway.{self.name}")

    async def stop(self, timeout: float | None = None) -> None:
        """Stop the loop and wait for it (a tick in progress is cancelled: ``timeout`` is
        not needed)."""
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _loop(self) -> None:
        while True:
            delay = self.interval
            try:
                if self.enabled is None or self.enabled():
                    await self.tick()
                    self.passes += 1
                self.failures = 0
            except Exception as exc:
                self.failures += 1
                if self.backoff:
                    delay = min(self.interval * 2**self.failures, max(self.interval, _MAX_BACKOFF))
                _log.warning("%s failed (%s); retrying in %.1fs", self.name, exc, delay)
            await asyncio.sleep(delay)
