"""An engine in memory for the runtime's unit tests: jobs in a dict, every call recorded.

It keeps the rules the runtime relies on (a claim is one attempt of one job, an ack or a
release changes a job only while it still executes that attempt on that node) and lets a
test make writes fail.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from typing import Any

from underway.jobs.engines.base import Engine, JobFilter, StageResult
from underway.jobs.job import Job, JobSpec, JobState
from underway.jobs.outcomes import Ack


class MemoryEngine(Engine):
    """Jobs in memory. ``fail_acks`` / ``fail_fetches``: how many next calls raise."""

    url = "memory://"

    def __init__(self) -> None:
        self.jobs: dict[int, Job[Any]] = {}
        self._ids = itertools.count(1)
        self.fetched: list[int] = []  # the limit of every fetch
        self.acked: list[list[Ack]] = []  # every ack batch written
        self.released: list[tuple[int, int]] = []
        self.calls: list[str] = []  # fetch, ack, heartbeat, release... in order
        self.fail_acks = 0
        self.ack_calls = 0
        self.fail_fetches = 0
        self.ack_gate: asyncio.Event | None = None  # while set to an unset event, acks wait

    # -- inserting and claiming ---------------------------------------------------------

    def add(self, queue: str = "default", worker: str = "w", *, max_attempts: int = 20) -> int:
        """Store one available job; return its id."""
        job_id = next(self._ids)
        self.jobs[job_id] = Job(
            id=job_id,
            state=JobState.AVAILABLE,
            queue=queue,
            worker=worker,
            args={"n": job_id},
            max_attempts=max_attempts,
        )
        return job_id

    def state(self, job_id: int) -> JobState:
        """The state of job ``job_id``."""
        return self.jobs[job_id].state

    async def insert(self, specs: Sequence[JobSpec], *, conn: Any = None) -> list[Job[Any]]:
        return self.insert_sync(specs, conn=conn)

    def insert_sync(self, specs: Sequence[JobSpec], *, conn: Any = None) -> list[Job[Any]]:
        out: list[Job[Any]] = []
        for spec in specs:
            job_id = self.add(spec.queue, spec.worker, max_attempts=spec.max_attempts)
            self.jobs[job_id] = replace(self.jobs[job_id], args=json.loads(spec.args_json))
            out.append(self.jobs[job_id])
        return out

    async def fetch(
        self,
        queue: str,
        limit: int,
        node: str,
        now: float,
        *,
        workers: Collection[str] | None = None,
    ) -> list[Job[Any]]:
        self.fetched.append(limit)
        self.calls.append("fetch")
        if self.fail_fetches:
            self.fail_fetches -= 1
            raise ConnectionError("fetch failed")
        claimed: list[Job[Any]] = []
        for job in self.jobs.values():
            if len(claimed) == limit:
                break
            wanted = workers is None or job.worker in workers
            if job.state is JobState.AVAILABLE and job.queue == queue and wanted:
                claimed.append(replace(job, state=JobState.EXECUTING, attempt=job.attempt + 1))
        for job in claimed:
            self.jobs[job.id] = replace(job, attempted_by=node)
        return [self.jobs[job.id] for job in claimed]

    async def ack(self, acks: Sequence[Ack], node: str) -> None:
        self.ack_calls += 1
        if self.ack_gate is not None:
            await self.ack_gate.wait()
        if self.fail_acks:
            self.fail_acks -= 1
            raise ConnectionError("ack failed")
        self.acked.append(list(acks))
        self.calls.append("ack")
        for ack in acks:
            job = self.jobs.get(ack.job_id)
            if job and job.state is JobState.EXECUTING and job.attempt == ack.attempt:
                self.jobs[ack.job_id] = replace(job, state=ack.state)

    async def release(self, claims: Sequence[tuple[int, int]], node: str, now: float) -> int:
        self.calls.append("release")
        count = 0
        for job_id, attempt in claims:
            job = self.jobs.get(job_id)
            if job and job.state is JobState.EXECUTING and job.attempt == attempt:
                self.jobs[job_id] = replace(job, state=JobState.AVAILABLE, attempt=attempt - 1)
                self.released.append((job_id, attempt))
                count += 1
        return count

    async def executing(self, node: str) -> list[tuple[int, int]]:
        return [
            (j.id, j.attempt)
            for j in self.jobs.values()
            if j.state is JobState.EXECUTING and j.attempted_by == node
        ]

    # -- nodes, leases and signals ------------------------------------------------------

    async def open(self) -> None:
        self.calls.append("open")

    async def close(self) -> None:
        self.calls.append("close")

    def migrate(self) -> list[str]:
        return []

    async def heartbeat(self, node: str, now: float, meta: Mapping[str, Any]) -> None:
        self.calls.append("heartbeat")

    async def forget_node(self, node: str) -> None:
        self.calls.append("forget_node")

    async def acquire_lease(self, name: str, node: str, ttl: float, now: float) -> bool:
        return True

    async def release_lease(self, name: str, node: str) -> None:
        self.calls.append("release_lease")

    async def wait_for_change(self, timeout: float) -> bool:
        await asyncio.sleep(timeout)
        return False

    async def publish(self, signal: Mapping[str, Any]) -> None:
        self.calls.append("publish")

    def publish_sync(self, signal: Mapping[str, Any]) -> None:
        self.calls.append("publish")

    async def signals(self) -> list[dict[str, Any]]:
        return []

    # -- housekeeping: nothing is due in memory -----------------------------------------

    async def stage(self, now: float, *, queue: str | None = None) -> StageResult:
        return StageResult({})

    async def prune(self, max_age: Mapping[JobState, float], now: float, limit: int) -> int:
        return 0

    async def rescue(self, stale_before: float, now: float) -> dict[str, int]:
        return {}

    async def live_nodes(self, stale_before: float, now: float) -> dict[str, dict[str, Any]]:
        return {}

    async def available_sample(
        self, queues: Collection[str], sample: int
    ) -> dict[tuple[str, str], int]:
        return {}

    async def insert_for_slot(self, name: str, slot: float, spec: JobSpec) -> Job[Any] | None:
        return None

    # -- look-ups -------------------------------------------------------------------------

    def get_job(self, job_id: int) -> Job[Any] | None:
        return self.jobs.get(job_id)

    def list_jobs(self, where: JobFilter) -> list[Job[Any]]:
        return [
            j for j in reversed(self.jobs.values()) if not where.states or j.state in where.states
        ]

    def retry_job(self, job_id: int, now: float) -> Job[Any] | None:
        return None

    def cancel_job(self, job_id: int, now: float) -> Job[Any] | None:
        return None

    def counts(self) -> dict[tuple[str, JobState], int]:
        out: dict[tuple[str, JobState], int] = {}
        for job in self.jobs.values():
            out[job.queue, job.state] = out.get((job.queue, job.state), 0) + 1
        return out


async def wait_until(predicate: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    """Await until ``predicate()`` is truthy, or fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s")
        await asyncio.sleep(0.005)


async def settle(rounds: int = 20) -> None:
    """Let every ready task run a few times (for asserting that nothing more happens)."""
    for _ in range(rounds):
        await asyncio.sleep(0)
