"""A job claimed for a node that never received it is handed back, not stranded."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from underway.jobs import Job, Jobs, JobState
from underway.jobs._runtime.periodic import Periodic

from ..conftest import MakeJobs, wait_for_state, wait_until


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


async def test_a_job_claimed_back_while_it_runs_here_runs_once(make_jobs: MakeJobs) -> None:
    """A rescue of a live node's job, claimed back by that node: no second run, no hand-back.

    The running attempt holds the newer claim and its outcome is recorded for it.
    """
    jobs = make_jobs(node_name="node-r", heartbeat_interval=0.2, rescue_after=30.0)
    started: list[int] = []
    finish = asyncio.Event()

    @jobs.worker
    async def work(job: Job[Any]) -> str:
        started.append(job.attempt)
        await finish.wait()
        return "done"

    job = await work.enqueue({})
    async with jobs:
        await wait_until(lambda: started == [1], 10.0, message="the first run to start")
        # What a rescuer does when it judges this node dead: the job goes back to its queue.
        now = time.time()
        assert await jobs.engine.rescue(stale_before=now + 1, now=now) == {"default": 1}

        async def claimed_back() -> bool:
            found = await jobs.get_job(job.id)
            return found is not None and found.state is JobState.EXECUTING and found.attempt == 2

        await wait_until(claimed_back, 10.0, message="node-r to claim the job back")
        reconciler = _component(jobs, "reconciler")
        seen = reconciler.passes
        await wait_until(lambda: reconciler.passes >= seen + 2, 20.0, message="two passes")
        assert started == [1], "a second run started beside the first"
        assert (await jobs.engine.executing("node-r")) == [(job.id, 2)], "handed back"
        finish.set()
        done = await wait_for_state(jobs, job.id, timeout=10.0)
    assert (done.state, done.attempt, started) == (JobState.COMPLETED, 2, [1])


def _component(jobs: Jobs, name: str) -> Periodic:
    node = jobs._node
    assert node is not None, "no node runs"
    (found,) = [c for c in node.periodic if c.name == name]
    return found
