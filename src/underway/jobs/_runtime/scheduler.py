"""Cron: the leader inserts one job per slot of every entry."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from underway import _telemetry as telemetry
from underway.jobs import _hooks as hooks
from underway.jobs._runtime.periodic import Periodic
from underway.jobs.cron import SLOT_WINDOW, Cron
from underway.jobs.engines.base import Engine
from underway.jobs.job import Job, JobSpec

__all__ = ["Scheduler"]

_log = logging.getLogger("underway.jobs")


class Scheduler(Periodic):
    """Every ``interval`` seconds, inserts the due slot of each cron entry.

    Runs only while ``leader()`` is true. Each slot is recorded with its job in one
    transaction, so a slot fires once however many nodes or leader changes see it.
    """

    name = "cron"

    def __init__(
        self,
        engine: Engine,
        entries: Sequence[Cron],
        *,
        node: str,
        started_at: float,
        leader_since: Callable[[], float | None],
        wake: Callable[[str], None],
        interval: float = 1.0,
        enabled: Callable[[], bool] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(interval, enabled=enabled)
        self.clock = clock
        self.engine = engine
        self.entries = list(entries)
        self.node = node
        self.started_at = started_at
        self.leader_since = leader_since
        self.wake = wake
        self._fired: dict[str, float] = {}

    async def tick(self) -> None:
        """Insert what is due now (nothing unless this node leads)."""
        since = self.leader_since()
        if since is None:
            return
        now = self.clock()
        for entry in self.entries:
            slot = self._slot(entry, now, since)
            if slot is None or self._fired.get(entry.key) == slot:
                continue
            spec = entry.spec(meta_extra={"cron": entry.key, "cron_slot": slot})
            job = await self._insert(entry.key, slot, spec)
            self._fired[entry.key] = slot
            if job is not None:
                _log.info("cron %s: enqueued job %s for slot %s", entry.key, job.id, slot)
                telemetry.emit(
                    "cron.insert",
                    {"slot": slot},
                    {"entry": entry.key, "job": job, "node": self.node},
                )
                self.wake(job.queue)

    async def _insert(self, key: str, slot: float, spec: JobSpec) -> Job[Any] | None:
        """Insert ``spec`` for ``slot`` (``None``: the slot was taken), within the hooks."""
        if not hooks.enqueue_hooks:
            return await self.engine.insert_for_slot(key, slot, spec)
        with hooks.enqueueing(hooks.Enqueueing([spec])) as insert:
            job = await self.engine.insert_for_slot(key, slot, insert.specs[0])
            insert.jobs = [] if job is None else [job]
        return job

    def _slot(self, entry: Cron, now: float, leader_since: float) -> float | None:
        if entry.is_reboot:  # once per start of the node that leads right after starting
            fresh = leader_since - self.started_at < SLOT_WINDOW
            return self.started_at if fresh else None
        try:
            return entry.due(now)
        except Exception as exc:
            _log.error("cron %s: cannot compute its next slot: %s", entry.key, exc)
            return None
