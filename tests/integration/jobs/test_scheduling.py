"""When and in which order a running node starts jobs."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from underway.jobs import Job, JobState

from ..conftest import MakeJobs, wait_for_state, wait_until

DELAY = 0.5
SOON = 1.0  # stage and poll intervals are 0.05 s: a due job starts well within this


async def test_schedule_in_runs_not_before_its_time_and_soon_after(make_jobs: MakeJobs) -> None:
    jobs = make_jobs()
    ran_at: list[float] = []

    @jobs.worker
    async def later(job: Job[Any]) -> None:
        ran_at.append(time.time())

    async with jobs:
        enqueued_at = time.time()
        job = await later.enqueue({}, schedule_in=DELAY)
        assert job.state is JobState.SCHEDULED
        await wait_for_state(jobs, job.id)

    (at,) = ran_at
    assert enqueued_at + DELAY <= at < enqueued_at + DELAY + SOON


@pytest.mark.parametrize(
    "tz", [UTC, timezone(timedelta(hours=5, minutes=30))], ids=["utc", "plus-0530"]
)
async def test_scheduled_at_runs_not_before_its_time_and_soon_after(
    make_jobs: MakeJobs, tz: timezone
) -> None:
    jobs = make_jobs()
    ran_at: list[float] = []

    @jobs.worker
    async def at_time(job: Job[Any]) -> None:
        ran_at.append(time.time())

    async with jobs:
        when = datetime.now(tz) + timedelta(seconds=DELAY)
        job = await at_time.enqueue({}, scheduled_at=when)
        assert job.state is JobState.SCHEDULED
        stored = await jobs.get_job(job.id)
        assert stored is not None
        assert stored.scheduled_at == when
        await wait_for_state(jobs, job.id)

    (at,) = ran_at
    assert when.timestamp() <= at < when.timestamp() + SOON


async def test_a_job_scheduled_far_ahead_stays_scheduled(make_jobs: MakeJobs) -> None:
    jobs = make_jobs()
    ran: list[int] = []

    @jobs.worker
    async def next_hour(job: Job[Any]) -> None:
        ran.append(job.id)

    @jobs.worker
    async def now(job: Job[Any]) -> None:
        ran.append(job.id)

    async with jobs:
        far = await next_hour.enqueue({}, schedule_in=3600)
        near = await now.enqueue({})
        await wait_for_state(jobs, near.id)
        await asyncio.sleep(0.3)  # six staging passes
        stored = await jobs.get_job(far.id)

    assert ran == [near.id]
    assert stored is not None
    assert stored.state is JobState.SCHEDULED
    assert stored.attempt == 0
    assert stored.scheduled_at is not None
    assert stored.scheduled_at.timestamp() == pytest.approx(time.time() + 3600, abs=5)


async def test_priority_then_scheduled_time_then_insertion(make_jobs: MakeJobs) -> None:
    jobs = make_jobs(queues={"default": 1})
    order: list[str] = []

    @jobs.worker
    async def record(job: Job[Any]) -> None:
        order.append(job.args["name"])

    now = time.time()
    # (name, priority, due seconds ago), inserted in this order.
    plan = [
        ("p5", 5, 30),
        ("p0-recent", 0, 10),
        ("p0-older", 0, 20),
        ("p9", 9, 40),
        ("p0-recent-second", 0, 10),
        ("p1", 1, 1),
    ]
    await jobs.enqueue_many(
        record.new({"name": name}, priority=prio, scheduled_at=now - ago)
        for name, prio, ago in plan
    )
    async with jobs:
        await wait_until(lambda: len(order) == len(plan), message="every job ran")

    assert order == ["p0-older", "p0-recent", "p0-recent-second", "p1", "p5", "p9"]


async def test_equal_priority_jobs_run_first_in_first_out(make_jobs: MakeJobs) -> None:
    jobs = make_jobs(queues={"default": 1})
    order: list[int] = []

    @jobs.worker
    async def record(job: Job[Any]) -> None:
        order.append(job.args["i"])

    count = 200
    await jobs.enqueue_many(record.new({"i": i}) for i in range(count))
    async with jobs:
        await wait_until(lambda: len(order) == count, 15.0, message="200 jobs ran")

    assert order == list(range(count))


async def test_jobs_enqueued_while_running_start_in_insertion_order(make_jobs: MakeJobs) -> None:
    jobs = make_jobs(queues={"default": 1})
    order: list[int] = []
    gate = asyncio.Event()

    @jobs.worker
    async def record(job: Job[Any]) -> None:
        if job.args["i"] == 0:
            await gate.wait()
        order.append(job.args["i"])

    async with jobs:
        for i in range(30):
            await record.enqueue({"i": i})
        gate.set()
        await wait_until(lambda: len(order) == 30, message="30 jobs ran")

    assert order == list(range(30))
