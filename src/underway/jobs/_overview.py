"""What the queues, nodes and cron entries are doing: the values behind ``Jobs.queues``,
``Jobs.nodes`` and ``Jobs.cron_entries``.

Each look-up reads indexes and small tables only (see :class:`~underway.jobs.engines.base.
Overview`), so a dashboard can ask every few seconds whatever history the table keeps. What
a node runs (limits, running jobs, paused queues, version) comes from its last heartbeat,
so it is at most a heartbeat interval old; a node of a version that did not record some of
it shows ``None`` there.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from underway.errors import ConfigError
from underway.jobs._runtime.leader import LEASE
from underway.jobs.cron import REBOOT, Cron, _expand
from underway.jobs.engines.base import NodeRow, Overview
from underway.jobs.job import JobState, to_datetime

__all__ = [
    "WAITING_STATES",
    "CronInfo",
    "NodeInfo",
    "NodeQueue",
    "QueueInfo",
    "cron_infos",
    "next_slot",
    "node_infos",
    "node_queues",
    "queue_infos",
]

WAITING_STATES = (JobState.SCHEDULED, JobState.AVAILABLE, JobState.EXECUTING, JobState.RETRYABLE)
"""The states :attr:`QueueInfo.counts` counts: every state but the finished ones."""


@dataclass(frozen=True, slots=True)
class NodeQueue:
    """One queue as one node runs it, from the node's last heartbeat.

    Attributes:
        node: The node's name.
        queue: The queue's name.
        limit: How many of the queue's jobs the node runs at once.
        running: How many it was running (``None``: its version does not say).
        paused: Whether it has the queue paused (``None``: its version does not say).
    """

    node: str
    queue: str
    limit: int
    running: int | None
    paused: bool | None


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """A queue: its waiting and running jobs, and the live nodes that run it.

    Attributes:
        name: The queue's name.
        counts: Jobs by state, for each of :data:`WAITING_STATES` (0 included). Finished
            jobs are not counted here: counting them would read the whole history.
        nodes: The live nodes that run the queue, by name.
    """

    name: str
    counts: Mapping[JobState, int]
    nodes: tuple[NodeQueue, ...]

    @property
    def limit(self) -> int:
        """How many of its jobs the live nodes run at once, all together."""
        return sum(n.limit for n in self.nodes)

    @property
    def running(self) -> int:
        """Jobs running on the live nodes that report it (see :attr:`NodeQueue.running`)."""
        return sum(n.running or 0 for n in self.nodes)

    @property
    def paused(self) -> bool:
        """Whether every live node that runs the queue has it paused (and one does)."""
        return bool(self.nodes) and all(n.paused for n in self.nodes)

    @property
    def partly_paused(self) -> bool:
        """Whether some live nodes have the queue paused and others do not."""
        return any(n.paused for n in self.nodes) and not self.paused


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A node with a heartbeat row: alive, or silent and not yet rescued.

    Attributes:
        name: The node's name.
        started_at: When it first heartbeated.
        heartbeat_at: Its last heartbeat.
        heartbeat_age: Seconds since then, on the clock liveness is judged by (the
            database server's on PostgreSQL).
        alive: Whether it heartbeated within ``rescue_after``: a silent node's jobs are
            rescued by the leader, which then removes its row.
        leader: Whether it holds the leader lease (pruning, rescue, cron).
        queues: The queues it runs, by name.
        workers: The workers it has (empty when its version does not say).
        version: Its underway version, if it says.
        host: Its host name, if it says.
        pid: Its process id, if it says.
    """

    name: str
    started_at: datetime
    heartbeat_at: datetime
    heartbeat_age: float
    alive: bool
    leader: bool
    queues: tuple[NodeQueue, ...]
    workers: tuple[str, ...] = ()
    version: str | None = None
    host: str | None = None
    pid: int | None = None


@dataclass(frozen=True, slots=True)
class CronInfo:
    """A cron entry of the app, with its last and next slot.

    Attributes:
        key: The name its slots are recorded under (:attr:`Cron.key`).
        expression: Its cron expression, as given.
        timezone: The IANA timezone its fields are read in.
        worker: The name of the worker it enqueues.
        queue: The queue its jobs go to.
        args: The args of its jobs.
        last_slot: The last slot a job was inserted for (on any node), or ``None``.
        next_slot: The next time it fires, or ``None`` for ``@reboot`` (when the leader
            next starts) or an expression that never fires again.
    """

    key: str
    expression: str
    timezone: str
    worker: str
    queue: str
    args: Mapping[str, Any]
    last_slot: datetime | None
    next_slot: datetime | None


def overview(engine: object) -> Overview:
    """``engine`` as an :class:`Overview`.

    Raises:
        ConfigError: The engine cannot tell (it is not a database engine of underway's).
    """
    if not isinstance(engine, Overview):
        raise ConfigError(f"{engine!r} cannot tell what its queues and nodes do")
    return engine


def node_queues(name: str, meta: Mapping[str, Any]) -> tuple[NodeQueue, ...]:
    """The queues node ``name`` runs, read from its heartbeat ``meta``.

    A node whose version did not record running jobs or paused queues gets ``None`` there;
    entries that are not what this version writes are left out.
    """
    limits = meta.get("queues")
    if not isinstance(limits, Mapping):
        return ()
    running = meta.get("running")
    paused = meta.get("paused")
    paused_set = {str(q) for q in paused} if isinstance(paused, list) else None
    found = []
    for queue, limit in sorted(limits.items()):
        if not _count(limit):
            continue
        runs = running.get(queue) if isinstance(running, Mapping) else None
        found.append(
            NodeQueue(
                node=name,
                queue=str(queue),
                limit=limit,
                running=runs if _count(runs) else None,
                paused=None if paused_set is None else str(queue) in paused_set,
            )
        )
    return tuple(found)


def node_infos(engine: object, *, rescue_after: float, now: float) -> list[NodeInfo]:
    """Every node with a heartbeat row, by name (see :class:`NodeInfo`)."""
    return [_node_info(row, rescue_after) for row in overview(engine).node_rows(LEASE, now)]


def queue_infos(
    engine: object, *, known: Iterable[str], rescue_after: float, now: float
) -> list[QueueInfo]:
    """Every queue that has waiting or running jobs, runs on a live node, or is in
    ``known`` (the app's own), by name."""
    source = overview(engine)
    counts = source.queue_counts()
    live = [n for n in source.node_rows(LEASE, now) if n.age <= rescue_after]
    by_queue: dict[str, list[NodeQueue]] = {}
    for row in live:
        for entry in node_queues(row.name, row.meta):
            by_queue.setdefault(entry.queue, []).append(entry)
    names = {*known, *(q for q, _ in counts), *by_queue}
    return [
        QueueInfo(
            name=name,
            counts={s: counts.get((name, s), 0) for s in WAITING_STATES},
            nodes=tuple(by_queue.get(name, ())),
        )
        for name in sorted(names)
    ]


def cron_infos(engine: object, crontab: Sequence[Cron], *, now: float) -> list[CronInfo]:
    """The entries of ``crontab``, in the order they were added, with their slots."""
    slots = overview(engine).cron_slots([e.key for e in crontab]) if crontab else {}
    return [
        CronInfo(
            key=entry.key,
            expression=entry.expression,
            timezone=entry.timezone,
            worker=entry.worker.name,
            queue=entry.queue or entry.worker.queue,
            args=dict(entry.args),
            last_slot=to_datetime(slots.get(entry.key)),
            next_slot=to_datetime(next_slot(entry.expression, entry.timezone, now)),
        )
        for entry in crontab
    ]


def next_slot(expression: str, timezone: str, now: float) -> float | None:
    """The first time after ``now`` (epoch seconds) that ``expression`` fires, read in
    ``timezone``; ``None`` for ``@reboot`` or an expression that never fires again."""
    from cronsim import CronSim, CronSimError

    if expression.strip().lower() == REBOOT:
        return None
    start = datetime.fromtimestamp(math.floor(now), ZoneInfo(timezone))
    try:
        slot: datetime = next(iter(CronSim(_expand(expression), start)))
    except (StopIteration, CronSimError):
        return None
    return slot.timestamp()


def _node_info(row: NodeRow, rescue_after: float) -> NodeInfo:
    meta = row.meta
    workers = meta.get("workers")
    version, host, pid = meta.get("version"), meta.get("host"), meta.get("pid")
    return NodeInfo(
        name=row.name,
        started_at=datetime.fromtimestamp(row.started_at, UTC),
        heartbeat_at=datetime.fromtimestamp(row.heartbeat_at, UTC),
        heartbeat_age=row.age,
        alive=row.age <= rescue_after,
        leader=row.leader,
        queues=node_queues(row.name, meta),
        workers=tuple(str(w) for w in workers) if isinstance(workers, list) else (),
        version=version if isinstance(version, str) else None,
        host=host if isinstance(host, str) else None,
        pid=pid if _count(pid) else None,
    )


def _count(value: object) -> bool:
    """Whether ``value`` is a non-negative int (and not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
