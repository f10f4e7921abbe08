"""One producer per queue: claims jobs up to the queue's limit and runs them."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from underway import _telemetry as telemetry
from underway._aio import wait_event
from underway.jobs._runtime.acker import Acker
from underway.jobs._runtime.executor import Executor
from underway.jobs.backoff import exponential
from underway.jobs.engines.base import Engine
from underway.jobs.job import Job
from underway.jobs.outcomes import Ack, decide, for_claim

__all__ = ["Producer"]

_log = logging.getLogger("underway.jobs")


class Producer:
    """Keeps up to ``limit`` jobs of one queue running on this node.

    It fetches the whole free capacity in one statement whenever capacity frees up or it is
    notified of new jobs, and polls every ``poll_interval`` seconds otherwise. Queues are
    isolated: each producer has its own limit and its own loop. It claims only jobs of the
    workers this node registered.

    A job runs at most once at a time on a node. If a claim arrives for a job that already
    runs here (it was rescued while this node could not heartbeat, and claimed back), no
    second run starts: the running one holds the newer claim too, and its outcome is
    recorded for the newest attempt. :attr:`claims` maps each running job to that attempt.
    """

    def __init__(
        self,
        queue: str,
        limit: int,
        *,
        engine: Engine,
        executor: Executor,
        acker: Acker,
        node: str,
        poll_interval: float,
    ) -> None:
        self.queue = queue
        self.limit = limit
        self.engine = engine
        self.executor = executor
        self.acker = acker
        self.node = node
        self.poll_interval = poll_interval
        self.paused = False
        self.running: dict[int, asyncio.Task[None]] = {}
        self.claims: dict[int, int] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._hurry = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._interrupted: list[tuple[int, int]] = []
        self.wait_for_threads = True
        self.handed_back: list[tuple[int, int]] = []
        self.left_running: list[int] = []

    def notify(self) -> None:
        """New jobs may be available: fetch now if there is capacity."""
        self._wake.set()

    def pause(self) -> None:
        """Stop claiming new jobs; running ones finish."""
        self.paused = True

    def resume(self) -> None:
        """Claim jobs again."""
        self.paused = False
        self._wake.set()

    def scale(self, limit: int) -> None:
        """Change the queue's limit on this node."""
        self.limit = limit
        self._wake.set()

    async def start(self) -> None:
        """Start claiming and running jobs."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=f"underway.producer.{self.queue}")

    async def stop(self, timeout: float | None = None) -> None:
        """Claim no more jobs, then give running jobs ``timeout`` seconds (``None``: as long
        as they take) and cancel the coroutines left.

        What was left unfinished is in :attr:`handed_back` and :attr:`left_running` (see
        :meth:`drain`); :attr:`wait_for_threads` says whether the stop waits for sync jobs
        whose threads still run after the grace.
        """
        await self.stop_fetching()
        self.handed_back, self.left_running = await self.drain(
            timeout, wait_for_threads=self.wait_for_threads
        )

    async def stop_fetching(self) -> None:
        """Claim no more jobs; running jobs go on."""
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            await task

    def hurry(self) -> None:
        """End the grace period of a drain at once (now or when it starts)."""
        self._hurry.set()

    async def drain(
        self, grace: float | None, *, wait_for_threads: bool = True
    ) -> tuple[list[tuple[int, int]], list[int]]:
        """Wait up to ``grace`` seconds for running jobs, then cancel the coroutines left.

        A sync job's thread cannot be interrupted: with ``wait_for_threads`` the drain
        waits for it (its job then finishes normally), otherwise it is left running.

        Returns:
            The claims ``(job id, attempt)`` that were cancelled (to hand back to the
            queue), and the ids of jobs still running (left ``executing``, for the lifeline
            of another node).
        """
        running = dict(self.running)
        if running:
            await self._wait_or_hurry(list(running.values()), grace)
            late = [i for i, task in running.items() if not task.done()]
            threaded = [running[i] for i in late if i in self.executor.in_threads]
            cancelled = [running[i] for i in late if i not in self.executor.in_threads]
            for task in cancelled:
                task.cancel()
            if cancelled:
                await asyncio.wait(cancelled, timeout=1.0)
            if threaded and wait_for_threads:
                await self._wait_for_threads(threaded)
        handed_back, self._interrupted = self._interrupted, []
        return handed_back, list(self.running)

    async def _wait_or_hurry(self, tasks: list[asyncio.Task[None]], grace: float | None) -> None:
        """Wait until every task is done, ``grace`` seconds passed, or :meth:`hurry`."""
        all_done = asyncio.ensure_future(asyncio.wait(tasks))
        hurried = asyncio.ensure_future(self._hurry.wait())
        try:
            await asyncio.wait(
                {all_done, hurried}, timeout=grace, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in (all_done, hurried):
                waiter.cancel()
            await asyncio.wait({all_done, hurried})

    async def _wait_for_threads(self, tasks: list[asyncio.Task[None]]) -> None:
        pending = set(tasks)
        while pending:
            _log.warning(
                "queue %s: waiting for %d sync job(s) whose threads cannot be interrupted",
                self.queue,
                len(pending),
            )
            _, pending = await asyncio.wait(pending, timeout=5.0)

    async def _loop(self) -> None:
        failures = 0
        while not self._stopping:
            self._wake.clear()
            demand = 0 if self.paused else self.limit - len(self.running)
            full = False
            if demand > 0:
                try:
                    jobs = await self._fetch(demand)
                    failures = 0
                except Exception as exc:
                    failures += 1
                    delay = min(0.1 * 2**failures, 10.0)
                    _log.warning(
                        "fetch from queue %s failed (%s); retry in %.1fs", self.queue, exc, delay
                    )
                    await asyncio.sleep(delay)
                    continue
                for job in jobs:
                    self._start(job)
                full = len(jobs) == demand
            await wait_event(self._wake, None if full or demand <= 0 else self.poll_interval)

    async def _fetch(self, demand: int) -> list[Job[Any]]:
        with telemetry.span("fetch", {"queue": self.queue, "node": self.node}) as extra:
            jobs = await self.engine.fetch(
                self.queue, demand, self.node, time.time(), workers=self.executor.workers.keys()
            )
            extra["count"] = len(jobs)
        return jobs

    def _start(self, job: Job[Any]) -> None:
        if job.id in self.running:  # claimed back while it runs here: the run holds it
            _log.warning(
                "job %d claimed again (attempt %d) while attempt %d still runs on this node; "
                "the running attempt's outcome is recorded for it",
                job.id,
                job.attempt,
                self.claims[job.id],
            )
            self.claims[job.id] = max(self.claims[job.id], job.attempt)
            return
        self.claims[job.id] = job.attempt
        self.running[job.id] = asyncio.create_task(
            self._execute(job), name=f"underway.job.{job.queue}.{job.id}"
        )

    async def _execute(self, job: Job[Any]) -> None:
        try:
            ack = await self._outcome(job)
            self.acker.push(for_claim(ack, self.claims[job.id], job.max_attempts))
        except asyncio.CancelledError:
            if self._stopping:
                self._interrupted.append((job.id, self.claims[job.id]))
            raise
        finally:
            self.running.pop(job.id, None)
            self.claims.pop(job.id, None)
            self._wake.set()

    async def _outcome(self, job: Job[Any]) -> Ack:
        try:
            return await self.executor.run(job)
        except Exception as exc:  # the executor records job errors itself: this is a bug
            _log.exception("running job %s failed outside its worker", job.id)
            backoff = exponential(job.attempt)
            return decide(
                job.id, job.attempt, job.max_attempts, exc, now=time.time(), backoff=backoff
            )
