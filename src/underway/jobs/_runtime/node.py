"""A node: the producers of its queues and the components that keep jobs moving."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from underway import _telemetry as telemetry
from underway._aio import Component, start_in_order, stop_in_reverse
from underway.jobs._runtime.acker import Acker
from underway.jobs._runtime.executor import INTERRUPTED, Executor
from underway.jobs._runtime.leader import Leader
from underway.jobs._runtime.lifeline import Heartbeat, Lifeline
from underway.jobs._runtime.notifier import Notifier
from underway.jobs._runtime.periodic import Periodic
from underway.jobs._runtime.producer import Producer
from underway.jobs._runtime.pruner import Pruner
from underway.jobs._runtime.queues import Queues
from underway.jobs._runtime.reconciler import Reconciler
from underway.jobs._runtime.scheduler import Scheduler
from underway.jobs._runtime.stager import Stager
from underway.jobs._runtime.unclaimed import Unclaimed
from underway.jobs._runtime.vacuumer import Vacuumer
from underway.jobs.config import NodeConfig
from underway.jobs.cron import Cron
from underway.jobs.engines.base import Engine, Vacuums
from underway.jobs.worker import Worker

__all__ = ["Node"]

_log = logging.getLogger("underway.jobs")
# The leader vacuums the live jobs of an engine that needs it (see Vacuums) every 2 s once
# 10,000 dead rows wait: at 10,000 jobs/s that is about a second's worth, a vacuum of tens
# of milliseconds; at low rates the database's autovacuum gets there first.
_VACUUM_INTERVAL = 2.0
_VACUUM_DEAD_ROWS = 10_000


class Node:
    """Runs the queues of one process against one engine.

    Its components (:attr:`components`) start in order and stop in reverse: the heartbeat
    (so the lifelines of other nodes see this node before it claims a job), the acker, the
    leader, the periodic components (stager, lifeline, cron, pruner, reconciler...), the
    notifier, and last the queues. So a stop first claims nothing more on any queue,
    waits ``shutdown_grace`` for running jobs, cancels the rest and hands them back to
    their queues, while the notifier (cancellations), the heartbeat and the others still
    run; then it stops them, writes every ack, stops the heartbeat and removes its row.
    """

    def __init__(
        self,
        engine: Engine,
        workers: Mapping[str, Worker],
        config: NodeConfig,
        crontab: Sequence[Cron] = (),
    ) -> None:
        self.engine = engine
        self.config = config
        self.name = config.name
        self.started_at = time.time()
        self.leader = Leader(engine, node=self.name, ttl=config.leader_ttl)
        leading = lambda: self.leader.is_leader  # noqa: E731
        total = sum(config.queues.values())
        # Threads start lazily; the producers' limits bound how many run, so the pool
        # never makes a sync job wait for a thread (a queue scaled up included).
        self.threads = ThreadPoolExecutor(max(64, 4 * total), thread_name_prefix="underway-job")
        self.executor = Executor(workers, self.name, self.threads)
        self.acker = Acker(engine, node=self.name)
        self.producers = {
            queue: Producer(
                queue,
                limit,
                engine=engine,
                executor=self.executor,
                acker=self.acker,
                node=self.name,
                poll_interval=config.poll_interval,
            )
            for queue, limit in config.queues.items()
        }
        self.heartbeat = Heartbeat(
            engine,
            node=self.name,
            interval=config.heartbeat_interval,
            queues=lambda: {q: p.limit for q, p in self.producers.items()},
            workers=workers.keys,
            running=lambda: {q: len(p.running) for q, p in self.producers.items()},
            paused=lambda: [q for q, p in self.producers.items() if p.paused],
        )
        self.periodic: list[Periodic] = [
            Stager(engine, interval=config.stage_interval, wake=self.wake, node=self.name),
            Lifeline(
                engine,
                node=self.name,
                interval=max(0.5, config.rescue_after / 4),
                rescue_after=config.rescue_after,
                wake=self.wake,
                connected_for=self.heartbeat.connected_for,
                enabled=leading,
            ),
            Unclaimed(
                engine,
                node=self.name,
                interval=max(1.0, config.rescue_after),
                live_within=config.rescue_after,
                enabled=leading,
            ),
        ]
        if crontab:
            self.periodic.append(
                Scheduler(
                    engine,
                    crontab,
                    node=self.name,
                    started_at=self.started_at,
                    leader_since=lambda: self.leader.since if self.leader.is_leader else None,
                    wake=self.wake,
                    enabled=leading,
                )
            )
        if config.prune is not None:
            self.periodic.append(
                Pruner(
                    engine,
                    interval=config.prune.interval,
                    max_age=config.prune.max_age,
                    counters_max_age=config.prune.counters,
                    limit=config.prune.limit,
                    node=self.name,
                    enabled=leading,
                )
            )
        if isinstance(engine, Vacuums):
            self.periodic.append(
                Vacuumer(
                    engine,
                    interval=_VACUUM_INTERVAL,
                    dead_rows=_VACUUM_DEAD_ROWS,
                    enabled=leading,
                )
            )
        self.periodic.append(
            Reconciler(
                engine,
                node=self.name,
                interval=max(1.0, 2 * config.heartbeat_interval),
                running=self._running_jobs,
                acking=self.acker.claims,
                wake=self.wake_all,
            )
        )
        self.notifier = Notifier(
            engine, wake_all=self.wake_all, on_signal=self.apply, timeout=config.poll_interval
        )
        self.queues = Queues(
            self.producers, engine=engine, node=self.name, grace=config.shutdown_grace
        )
        self.components: list[Component] = [
            self.heartbeat,
            self.acker,
            self.leader,
            *self.periodic,
            self.notifier,
            self.queues,
        ]
        self.started = False

    def _running_jobs(self) -> set[int]:
        return {i for producer in self.producers.values() for i in producer.running}

    def wake(self, queue: str) -> None:
        """Tell ``queue``'s producer that jobs may be available."""
        producer = self.producers.get(queue)
        if producer is not None:
            producer.notify()

    def wake_all(self) -> None:
        """Tell every producer that jobs may be available."""
        for producer in self.producers.values():
            producer.notify()

    def apply(self, signal: Mapping[str, Any]) -> None:
        """Carry out a control signal meant for every node or for this one."""
        target = signal.get("node")
        if target is not None and target != self.name:
            return
        action, queue = signal.get("action"), signal.get("queue")
        producers = (
            list(self.producers.values())
            if queue is None
            else ([self.producers[queue]] if queue in self.producers else [])
        )
        if action == "pause":
            for producer in producers:
                producer.pause()
        elif action == "resume":
            for producer in producers:
                producer.resume()
        elif action == "scale" and isinstance(signal.get("limit"), int) and signal["limit"] > 0:
            for producer in producers:
                producer.scale(signal["limit"])
        elif action == "cancel" and isinstance(signal.get("job_id"), int):
            self.interrupt(signal["job_id"])
        else:
            _log.warning("ignoring an unknown control signal: %r", dict(signal))

    def interrupt(self, job_id: int) -> None:
        """Cancel job ``job_id`` if it runs here as a coroutine (a thread cannot be)."""
        if job_id in self.executor.in_threads:
            return
        for producer in self.producers.values():
            task = producer.running.get(job_id)
            if task is not None:
                task.cancel(INTERRUPTED)

    async def start(self) -> None:
        """Open the engine and start every component, in order."""
        await self.engine.open()
        await self.engine.signals()  # from now on: signals published after start reach us
        await start_in_order(self.components)
        self.started = True
        telemetry.emit(
            "node.start",
            {"system_time": time.time()},
            {"node": self.name, "queues": dict(self.config.queues)},
        )

    def hurry(self) -> None:
        """Cut the grace period of this node's stop short (see ``Jobs.stop_now``)."""
        self.queues.hurry()

    async def stop(self, grace: float | None = None, *, wait_for_threads: bool = True) -> int:
        """Shut down gracefully (see the class docstring): stop every component in reverse.

        Args:
            grace: Seconds running jobs get (default: the configured ``shutdown_grace``).
            wait_for_threads: Wait for sync jobs whose threads are still running after the
                grace period (heartbeating meanwhile). With False they are left
                ``executing`` and the heartbeat row stays, so other nodes rescue them only
                once it expires: the process must then exit (see ``Jobs.run``).

        Returns:
            How many jobs were left running.
        """
        if not self.started:
            return 0
        self.started = False
        self.queues.grace = self.config.shutdown_grace if grace is None else grace
        self.queues.wait_for_threads = wait_for_threads
        await stop_in_reverse(self.components)
        left = self.queues.left_running
        if left:
            _log.warning(
                "%d job(s) still running in threads are left executing; other nodes rescue "
                "them once this node's heartbeat expires",
                len(left),
            )
        else:
            await self._try(self.engine.forget_node(self.name), "remove the node's heartbeat")
        self.threads.shutdown(wait=False, cancel_futures=True)
        telemetry.emit(
            "node.stop",
            {"system_time": time.time()},
            {
                "node": self.name,
                "released": len(self.queues.handed_back),
                "left_running": len(left),
            },
        )
        return len(left)

    @staticmethod
    async def _try(call: object, what: str) -> None:
        try:
            await call  # type: ignore[misc]
        except Exception as exc:
            _log.error("could not %s while stopping: %s", what, exc)
