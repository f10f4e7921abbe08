"""Makes scheduled and retryable jobs available when they are due."""

from __future__ import annotations

import time
from collections.abc import Callable

from underway import _telemetry as telemetry
from underway.jobs._runtime.periodic import Periodic
from underway.jobs.engines.base import Engine

__all__ = ["Stager"]


class Stager(Periodic):
    """Every ``interval`` seconds, moves due jobs to ``available`` and wakes their queues."""

    name = "stager"

    def __init__(
        self, engine: Engine, *, interval: float, wake: Callable[[str], None], node: str
    ) -> None:
        super().__init__(interval)
        self.engine = engine
        self.wake = wake
        self.node = node

    async def tick(self) -> None:
        """One staging pass."""
        with telemetry.span("stage", {"node": self.node}) as extra:
            result = await self.engine.stage(time.time())
            extra["count"] = result.count
        for queue in result.queues:
            self.wake(queue)
