"""Reports jobs that wait for a worker no live node has.

A node claims only jobs of the workers it registered, so a job whose worker no live node
has is never run, and never discarded either: it waits, ``available``, until a node that
has the worker starts (a rolling deploy that adds a worker), or an operator cancels it.
The leader looks at the head of each queue the live nodes serve, where such jobs gather,
and reports them: a warning in the log and an ``"jobs.unclaimable"`` telemetry event per
queue and worker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from underway import _telemetry as telemetry
from underway.jobs._runtime.periodic import Periodic
from underway.jobs.engines.base import Engine

__all__ = ["Unclaimed", "served_queues", "unclaimable"]

_log = logging.getLogger("underway.jobs")
SAMPLE = 1000  # available jobs looked at per queue, from its head


def served_queues(nodes: Mapping[str, Mapping[str, Any]]) -> set[str]:
    """The queues that at least one of ``nodes`` (name to heartbeat meta) runs."""
    queues: set[str] = set()
    for meta in nodes.values():
        served = meta.get("queues")
        if isinstance(served, Mapping):
            queues.update(str(q) for q in served)
    return queues


def unclaimable(
    nodes: Mapping[str, Mapping[str, Any]], sample: Mapping[tuple[str, str], int]
) -> dict[tuple[str, str], int] | None:
    """The ``(queue, worker)`` counts of ``sample`` that no node of ``nodes`` can claim.

    A node claims a job when it runs the job's queue and has its worker: a worker that only
    nodes of other queues have does not help.

    Returns:
        ``None`` when it cannot be told: no live node, or a node that does not say which
        workers it has (a version that did not record them).
    """
    claimable: set[tuple[str, str]] = set()
    for meta in nodes.values():
        workers, queues = meta.get("workers"), meta.get("queues")
        if not isinstance(workers, list):
            return None
        if isinstance(queues, Mapping):
            claimable.update((str(q), str(w)) for q in queues for w in workers)
    if not nodes:
        return None
    return {key: n for key, n in sample.items() if key not in claimable}


class Unclaimed(Periodic):
    """Every ``interval`` seconds, reports jobs whose worker no live node has."""

    name = "unclaimed"

    def __init__(
        self,
        engine: Engine,
        *,
        node: str,
        interval: float,
        live_within: float,
        enabled: Callable[[], bool] | None = None,
    ) -> None:
        super().__init__(interval, enabled=enabled)
        self.engine = engine
        self.node = node
        self.live_within = live_within
        self.found: dict[tuple[str, str], int] = {}

    async def tick(self) -> None:
        """One look at the head of every served queue."""
        now = time.time()
        nodes = await self.engine.live_nodes(now - self.live_within, now)
        sample = await self.engine.available_sample(served_queues(nodes), SAMPLE)
        found = unclaimable(nodes, sample)
        self.found = found or {}
        for (queue, worker), count in sorted(self.found.items()):
            _log.warning(
                "queue %s: %d%s job(s) of worker %r wait: no live node registered that worker "
                "(deploy a node that has it, or cancel the jobs)",
                queue,
                count,
                "+" if count >= SAMPLE else "",
                worker,
            )
            telemetry.emit(
                "jobs.unclaimable",
                {"count": count},
                {"queue": queue, "worker": worker, "node": self.node},
            )
