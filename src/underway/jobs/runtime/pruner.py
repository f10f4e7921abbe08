"""Deletes finished jobs once they are older than their state's age."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from underway import _telemetry as telemetry
from underway.jobs.engines.base import Engine
from underway.jobs.job import JobState
from underway.jobs.runtime._periodic import Periodic

__all__ = ["Pruner"]


class Pruner(Periodic):
    """Every ``interval`` seconds, deletes finished jobs in chunks of ``limit`` rows."""

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
        """Delete chunks until fewer than ``limit`` rows were old enough."""
        while True:
            with telemetry.span("prune", {"node": self.node}) as extra:
                deleted = await self.engine.prune(self.max_age, time.time(), self.limit)
                extra["count"] = deleted
            if deleted < self.limit:
                return
