"""Deletes finished jobs once they are older than their state's age, and per-minute
counters once they are older than theirs."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from underway import _telemetry as telemetry
from underway.jobs._runtime.periodic import Periodic
from underway.jobs.engines.base import Engine, JobCounters
from underway.jobs.job import JobState

__all__ = ["BATCH", "COUNTERS", "Pruner"]

BATCH = 1_000  # rows per prune statement: milliseconds on either engine
COUNTERS = "counters"  # the span attribute ``state`` of a batch of counters


class Pruner(Periodic):
    """Every ``interval`` seconds, deletes up to ``limit`` finished jobs, in batches.

    ``limit`` bounds what one pass deletes, so a large backlog of history (retention
    shortened, or a pruner that was off) is worked off at a steady pace instead of in one
    long burst that competes with the jobs; each batch is a short transaction of its own,
    of one finished state, the states taking turns. With ``counters_max_age`` and an
    engine that keeps per-minute counters, the counters older than that take their turn
    too, within the same ``limit``.
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
        counters_max_age: float | None = None,
        enabled: Callable[[], bool] | None = None,
    ) -> None:
        super().__init__(interval, enabled=enabled)
        self.engine = engine
        self.max_age = dict(max_age)
        self.counters_max_age = counters_max_age
        self.limit = limit
        self.node = node

    async def tick(self) -> None:
        """Delete batches, state by state (then the counters) in turn, until ``limit`` rows
        are gone or none has a full batch left (so a flood of completed jobs never starves
        the others)."""
        left = self.limit
        turns: list[tuple[JobState | str, float]] = list(self.max_age.items())
        if self.counters_max_age is not None and isinstance(self.engine, JobCounters):
            turns.append((COUNTERS, self.counters_max_age))
        while left > 0 and turns:
            for state, age in list(turns):
                batch = min(BATCH, left)
                with telemetry.span("prune", {"node": self.node, "state": state}) as extra:
                    deleted = await self._prune(state, age, batch)
                    extra["count"] = deleted
                left -= deleted
                if deleted < batch:
                    turns.remove((state, age))
                if left <= 0:
                    return

    async def _prune(self, state: JobState | str, age: float, batch: int) -> int:
        now = time.time()
        if isinstance(state, JobState):
            return await self.engine.prune({state: age}, now, batch)
        assert isinstance(self.engine, JobCounters)
        return await self.engine.prune_counters(now - age, batch)
