"""Keeps the table of waiting and running jobs free of dead rows while jobs flow."""

from __future__ import annotations

import logging
from collections.abc import Callable

from underway.jobs._runtime.periodic import Periodic
from underway.jobs.engines.base import Vacuums

__all__ = ["Vacuumer"]

_log = logging.getLogger("underway.jobs")


class Vacuumer(Periodic):
    """Every ``interval`` seconds, vacuums the live jobs once ``dead_rows`` have piled up.

    Run by the leader only. Its cost follows the jobs waiting and running, never the
    history: finished jobs live apart (see the engine) and are vacuumed by the database's
    own autovacuum as they are pruned.
    """

    name = "vacuum"

    def __init__(
        self,
        engine: Vacuums,
        *,
        interval: float,
        dead_rows: int,
        enabled: Callable[[], bool] | None = None,
    ) -> None:
        super().__init__(interval, enabled=enabled)
        self.engine = engine
        self.dead_rows = dead_rows
        self.vacuums = 0  # vacuums run

    async def tick(self) -> None:
        """Vacuum if enough dead rows wait (a cheap look-up of the statistics otherwise)."""
        dead = await self.engine.vacuum(self.dead_rows)
        if dead is not None:
            self.vacuums += 1
            _log.debug("vacuumed the live jobs (%d dead rows)", dead)
