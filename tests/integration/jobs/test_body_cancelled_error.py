"""A job body that raises CancelledError of its own fails its attempt; only a cancel of the
job's task (a stop, cancel_job) ends a run without an outcome."""

from __future__ import annotations

import asyncio
from typing import Any

from underway.jobs import Job, JobState

from ..conftest import MakeJobs, wait_for_state


async def test_a_cancelled_error_of_the_body_fails_the_attempt(make_jobs: MakeJobs) -> None:
    jobs = make_jobs()

    @jobs.worker(max_attempts=1)
    async def awaits_a_cancelled_task(job: Job[Any]) -> None:
        inner = asyncio.ensure_future(asyncio.sleep(30))
        asyncio.get_running_loop().call_soon(inner.cancel)
        await inner  # another task's cancellation, not this job's

    @jobs.worker(max_attempts=1)
    async def raises_it(job: Job[Any]) -> None:
        raise asyncio.CancelledError("from a library")

    @jobs.worker(max_attempts=2)
    def raises_it_in_a_thread(job: Job[Any]) -> None:
        raise asyncio.CancelledError("from a sync library")

    enqueued = await jobs.enqueue_many(
        [w.new({}) for w in (awaits_a_cancelled_task, raises_it, raises_it_in_a_thread)]
    )
    async with jobs:
        done = [
            await wait_for_state(jobs, job.id, JobState.DISCARDED, JobState.RETRYABLE)
            for job in enqueued
        ]
    assert [job.state for job in done] == [
        JobState.DISCARDED,
        JobState.DISCARDED,
        JobState.RETRYABLE,
    ]
    for job in done:
        assert job.attempt == 1
        assert job.errors[-1].error.startswith("CancelledError"), job.errors
