"""A job claimed for a node that never received it is handed back, not stranded."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from underway.jobs import Job, JobState

from .conftest import MakeJobs, wait_for_state


async def test_a_claim_whose_reply_was_lost_is_released_and_run(make_jobs: MakeJobs) -> None:
    jobs = make_jobs(node_name="node-r", heartbeat_interval=0.2, rescue_after=30.0)
    ran: list[int] = []

    @jobs.worker
    async def work(job: Job[Any]) -> None:
        ran.append(job.attempt)

    job = await work.enqueue({})
    await jobs.engine.open()
    # The claim commits in the database, but the node never hears of it.
    lost = await jobs.engine.fetch("default", 1, "node-r", time.time())
    assert [j.id for j in lost] == [job.id]
    started = time.monotonic()
    async with jobs:
        done = await wait_for_state(jobs, job.id, timeout=10.0)
    assert done.state is JobState.COMPLETED
    assert ran == [1], "released without counting the lost attempt, then run once"
    assert time.monotonic() - started >= 1.0, "released only after two passes agreed"


async def test_jobs_running_or_waiting_for_their_ack_are_never_released(
    make_jobs: MakeJobs,
) -> None:
    jobs = make_jobs(heartbeat_interval=0.2, rescue_after=30.0, queues={"default": 10})
    ran: list[int] = []

    @jobs.worker
    async def work(job: Job[Any]) -> None:
        await asyncio.sleep(0.25)  # several reconciler passes see jobs running
        ran.append(job.id)

    async with jobs:
        inserted = await jobs.enqueue_many(work.new({"i": i}) for i in range(100))
        for j in inserted:
            await wait_for_state(jobs, j.id, timeout=20.0)
    assert sorted(ran) == sorted(j.id for j in inserted), "each job ran exactly once"
