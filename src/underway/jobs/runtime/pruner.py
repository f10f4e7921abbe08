"""Deletes finished jobs once they are older than their state's age."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from underway import _telemetry as telemetry
from underway.jobs.engines.base import Engine
from underway.jobs.job import JobState
from underway.jobs.runtime._periodic import Periodic

__all__ = ["BATCH", "Pruner"]

BATCH = 1_000  # rows per prune statement: milliseconds on either engine


class Pruner(Periodic):
    """Every ``interval`` seconds, deletes up to ``limit`` finished jobs, in batches.

    ``limit`` bounds what one pass deletes, so a large backlog of history (retention
    shortened, or a pruner that was off) is worked off at a steady pace instead of in one
    long burst that competes with the jobs; each batch is a short transaction of its own.
    """

    name = "pruner"

    def __init__(
        self,
        engine: Engine,
        *,
        interval: float,
        max_age: Mapping[JobState, float],
        limit: int,
        node: str,
        enabled: Callable[[], bool] | None = None,
    ) -> None:
        super().__init__(interval, enabled=enabled)
        self.engine = engine
        self.max_age = dict(max_age)
        self.limit = limit
        self.node = node

    async def tick(self) -> None:
        """Delete batches until ``limit`` rows are gone or a batch comes back short."""
        left = self.limit
        while left > 0:
            batch = min(BATCH, left)
            with telemetry.span("prune", {"node": self.node}) as extra:
                deleted = await self.engine.prune(self.max_age, time.time(), batch)
                extra["count"] = deleted
            left -= deleted
            if deleted < batch:
                return
