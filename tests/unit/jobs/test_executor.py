"""The executor's sync path: jobs in threads, tracked until their thread really returns."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from underway.jobs import Jobs, JobState
from underway.jobs._runtime.executor import Executor
from underway.jobs.engines.inline import job_from_spec

WAIT = 10.0


async def test_a_cancelled_sync_job_stays_in_threads_until_its_body_returns(
    pool: ThreadPoolExecutor,
) -> None:
    jobs = Jobs("sqlite:///:memory:")
    started, go_on = threading.Event(), threading.Event()

    @jobs.worker(name="slow")
    def slow(job: Any) -> str:
        started.set()
        go_on.wait(WAIT)
        return "done"

    executor = Executor(jobs.workers, "n", pool)
    job = job_from_spec(slow.new(), 1)
    task = asyncio.ensure_future(executor.run(job))
    assert await asyncio.to_thread(started.wait, WAIT)
    assert job.id in executor.in_threads
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert job.id in executor.in_threads  # a thread cannot be stopped: it still runs
    go_on.set()
    for _ in range(int(WAIT / 0.01)):
        if job.id not in executor.in_threads:
            break
        await asyncio.sleep(0.01)
    assert job.id not in executor.in_threads


async def test_sync_jobs_that_raise_anything_fail_and_never_hang(
    pool: ThreadPoolExecutor,
) -> None:
    jobs = Jobs("sqlite:///:memory:")

    @jobs.worker(name="stops", max_attempts=1)
    def stops(job: Any) -> None:
        raise StopIteration  # an asyncio future refuses it as an exception

    @jobs.worker(name="exits", max_attempts=1)
    def exits(job: Any) -> None:
        raise SystemExit(2)

    executor = Executor(jobs.workers, "n", pool)
    for i, worker in enumerate((stops, exits)):
        job = job_from_spec(worker.new(), i + 1)
        ack = await asyncio.wait_for(executor.run(job), WAIT)
        assert ack.state is JobState.DISCARDED
        assert job.id not in executor.in_threads
