"""Deletes finished jobs once they are older than their state's age."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from underway import _telemetry as telemetry
from underway.jobs._runtime.periodic import Periodic
from underway.jobs.engines.base import Engine
from underway.jobs.job import JobState

__all__ = ["BATCH", "Pruner"]

BATCH = 1_000  # rows per prune statement: milliseconds on either engine


class Pruner(Periodic):
    """Every ``interval`` seconds, deletes up to ``limit`` finished jobs, in batches.

    ``limit`` bounds what one pass deletes, so a large backlog of history (retention
    shortened, or a pruner that was off) is worked off at a steady pace instead of in one
    long burst that competes with the jobs; each batch is a short transaction of its own,
    of one finished state, the states taking turns.
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
        """Delete batches, state by state in turn, until ``limit`` rows are gone or no state
        has a full batch left (so a flood of completed jobs never starves the others)."""
        left = self.limit
        states = list(self.max_age.items())
        while left > 0 and states:
            for state, age in list(states):
                batch = min(BATCH, left)
                with telemetry.span("prune", {"node": self.node, "state": state}) as extra:
                    deleted = await self.engine.prune({state: age}, time.time(), batch)
                    extra["count"] = deleted
                left -= deleted
                if deleted < batch:
                    states.remove((state, age))
                if left <= 0:
                    return
