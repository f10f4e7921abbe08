"""Queues on a running node: limits, isolation, pause/resume/scale, queues not run here."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from underway.errors import ConfigError
from underway.jobs import Job, Jobs, JobState

from ..conftest import MakeJobs, wait_for_state, wait_until


class Gauge:
    """Counts jobs running at once and remembers the most seen."""

    def __init__(self) -> None:
        self.now = 0
        self.max = 0
        self.done = 0

    def enter(self) -> None:
        self.now += 1
        self.max = max(self.max, self.now)

    def leave(self) -> None:
        self.now -= 1
        self.done += 1


async def _states(jobs: Jobs, queue: str) -> list[JobState]:
    return [j.state for j in await jobs.list_jobs(queue=queue, limit=1000)]


async def test_the_queue_limit_is_reached_and_never_exceeded(make_jobs: MakeJobs) -> None:
    jobs = make_jobs(queues={"default": 3})
    gauge = Gauge()

    @jobs.worker
    async def work(job: Job[Any]) -> None:
        gauge.enter()
        try:
            await asyncio.sleep(0.02)
        finally:
            gauge.leave()

    async with jobs:
        await jobs.enqueue_many(work.new({"i": i}) for i in range(30))
        await wait_until(lambda: gauge.done == 30, message="30 jobs finished")

    assert gauge.max == 3


async def test_a_slow_queue_does_not_delay_a_fast_queue(make_jobs: MakeJobs) -> None:
    jobs = make_jobs(queues={"slow": 1, "fast": 5})
    slow_done: list[float] = []
    fast_done: list[float] = []

    @jobs.worker(queue="slow")
    async def slow(job: Job[Any]) -> None:
        await asyncio.sleep(1.0)
        slow_done.append(time.monotonic())

    @jobs.worker(queue="fast")
    async def fast(job: Job[Any]) -> None:
        fast_done.append(time.monotonic())

    async with jobs:
        slow_jobs = await jobs.enqueue_many(slow.new({"i": i}) for i in range(2))
        await wait_for_state(jobs, slow_jobs[0].id, JobState.EXECUTING)
        await jobs.enqueue_many(fast.new({"i": i}) for i in range(100))
        await wait_until(lambda: len(fast_done) == 100, message="100 fast jobs finished")
        slow_when_fast_finished = len(slow_done)
        await wait_until(lambda: len(slow_done) == 2, message="both slow jobs finished")

    assert slow_when_fast_finished == 0
    assert max(fast_done) < min(slow_done)


async def test_pause_stops_claiming_and_resume_starts_again(make_jobs: MakeJobs) -> None:
    jobs = make_jobs(queues={"default": 2})
    gate = asyncio.Event()
    ran: list[int] = []

    @jobs.worker
    async def work(job: Job[Any]) -> None:
        if job.args["i"] == 0:
            await gate.wait()
        ran.append(job.args["i"])

    async with jobs:
        first = await work.enqueue({"i": 0})
        await wait_for_state(jobs, first.id, JobState.EXECUTING)
        await jobs.pause_queue("default")
        await jobs.enqueue_many(work.new({"i": i}) for i in range(1, 6))
        gate.set()
        await wait_for_state(jobs, first.id)  # a running job finishes while paused
        await asyncio.sleep(0.3)  # six poll intervals
        paused_states = await _states(jobs, "default")
        ran_while_paused = list(ran)
        await jobs.resume_queue("default")
        await wait_until(lambda: len(ran) == 6, message="every job ran after resume")

    assert ran_while_paused == [0]
    assert sorted(paused_states) == sorted([JobState.COMPLETED] + [JobState.AVAILABLE] * 5)


async def test_scale_changes_the_limit_of_a_running_queue(make_jobs: MakeJobs) -> None:
    jobs = make_jobs(queues={"default": 1})
    gate = asyncio.Event()
    gauge = Gauge()

    @jobs.worker
    async def work(job: Job[Any]) -> None:
        gauge.enter()
        try:
            await gate.wait()
        finally:
            gauge.leave()

    async with jobs:
        await jobs.enqueue_many(work.new({"i": i}) for i in range(8))
        await wait_until(lambda: gauge.now == 1, message="one job running")
        await asyncio.sleep(0.2)
        at_one = gauge.max
        await jobs.scale_queue("default", 4)
        await wait_until(lambda: gauge.now == 4, message="four jobs running")
        await asyncio.sleep(0.2)
        at_four = gauge.max
        gate.set()
        await wait_until(lambda: gauge.done == 8, message="eight jobs finished")
        with pytest.raises(ConfigError, match="limit of queue 'default' must be an int >= 1"):
            await jobs.scale_queue("default", 0)
        with pytest.raises(ConfigError, match="queue 'mail' does not run on this node"):
            await jobs.pause_queue("mail", local_only=True)

    assert (at_one, at_four) == (1, 4)


async def test_a_queue_not_run_by_the_node_keeps_its_jobs_available(
    make_jobs: MakeJobs,
) -> None:
    jobs = make_jobs(queues={"default": 2})
    ran: list[str] = []

    @jobs.worker(queue="reports")
    async def report(job: Job[Any]) -> None:
        ran.append(job.queue)

    @jobs.worker
    async def ping(job: Job[Any]) -> None:
        ran.append(job.queue)

    async with jobs:
        waiting = await report.enqueue({})
        done = await ping.enqueue({})
        await wait_for_state(jobs, done.id)
        await asyncio.sleep(0.3)
        stored = await jobs.get_job(waiting.id)
        counts = jobs.counts_sync()

    assert ran == ["default"]
    assert stored is not None
    assert stored.state is JobState.AVAILABLE
    assert stored.attempt == 0
    assert stored.attempted_by is None
    assert counts == {("reports", JobState.AVAILABLE): 1, ("default", JobState.COMPLETED): 1}

    other = make_jobs(queues={"reports": 1})
    other.workers.update(jobs.workers)
    async with other:
        finished = await wait_for_state(other, waiting.id)
    assert finished.state is JobState.COMPLETED
    assert finished.attempted_by == other.config.name
