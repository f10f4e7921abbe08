"""Runs one job: finds its worker, applies the timeout, and decides the outcome."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from concurrent.futures import Executor as ThreadPool
from typing import Any

from underway import _telemetry as telemetry
from underway.errors import JobTimeout, UnknownWorker
from underway.jobs.job import Job, JobState
from underway.jobs.outcomes import Ack, Cancel, Error, Snooze, decide
from underway.jobs.worker import Worker

__all__ = ["Executor"]


class Executor:
    """Performs jobs with the registered workers. Sync workers run in ``threads``."""

    def __init__(self, workers: Mapping[str, Worker], node: str, threads: ThreadPool) -> None:
        self.workers = workers
        self.node = node
        self.threads = threads

    async def run(self, job: Job[Any]) -> Ack:
        """Run ``job`` and return the change to record. Never raises except on cancellation."""
        worker = self.workers.get(job.worker)
        if worker is None:
            known = ", ".join(sorted(self.workers)) or "none"
            error = UnknownWorker(
                f"no worker named {job.worker!r} is registered on node {self.node} "
                f"(registered: {known}); the job is discarded"
            )
            return Ack(
                job.id,
                JobState.DISCARDED,
                time.time(),
                job.attempt,
                error=f"UnknownWorker: {error}",
            )
        meta = {"job": job, "queue": job.queue, "worker": job.worker, "node": self.node}
        traced = telemetry.enabled()
        start = time.perf_counter()
        if traced:
            telemetry.emit("job.start", {"system_time": time.time()}, meta)
        outcome = await self._perform(worker, job)
        now = time.time()
        result = None
        plain = not isinstance(outcome, BaseException | Snooze | Cancel | Error)
        if worker.record_result and plain:
            try:
                result = json.dumps(outcome, separators=(",", ":"), allow_nan=False)
            except (TypeError, ValueError) as exc:
                outcome = TypeError(f"result of {worker.name} is not JSON-serialisable: {exc}")
        failed = isinstance(outcome, BaseException | Error)
        backoff = worker.backoff(job) if failed else 0.0
        ack = decide(
            job.id, job.attempt, job.max_attempts, outcome, now=now, backoff=backoff, result=result
        )
        if traced:
            measures = {"duration": time.perf_counter() - start}
            info = {**meta, "state": ack.state.value}
            if failed:
                telemetry.emit("job.exception", measures, {**info, "error": outcome})
            else:
                telemetry.emit("job.stop", measures, info)
        return ack

    async def _perform(self, worker: Worker, job: Job[Any]) -> Any:
        try:
            typed = worker.typed_job(job)
            if worker.is_async:
                call = worker.call(typed)
            else:
                call = asyncio.get_running_loop().run_in_executor(self.threads, worker.call, typed)
            if worker.timeout is None:
                return await call
            try:
                return await asyncio.wait_for(call, worker.timeout)
            except TimeoutError:
                return JobTimeout(f"job {job.id} ran longer than its timeout of {worker.timeout}s")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return exc
