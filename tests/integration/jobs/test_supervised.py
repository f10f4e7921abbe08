"""A jobs node as a child of a Supervisor: started, stopped gracefully, and hurried."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from underway.errors import ChildStartError, ConfigError, UnderwayError
from underway.jobs import Job, Jobs, JobState
from underway.tasks import Supervisor

from ..conftest import MakeJobs, wait_for_state, wait_until

BOUND = 20.0  # seconds: far less than the grace of the tests that hurry


def _worker(jobs: Jobs, started: list[int], finish: asyncio.Event) -> None:
    @jobs.worker(name="gated", max_attempts=3, record_result=True)
    async def gated(job: Job[Any]) -> str:
        started.append(job.id)
        await finish.wait()
        return "done"


async def test_the_child_is_ready_once_its_node_runs_and_runs_jobs(make_jobs: MakeJobs) -> None:
    jobs = make_jobs()
    started: list[int] = []
    finish = asyncio.Event()
    finish.set()
    _worker(jobs, started, finish)
    spec = jobs.child_spec()
    assert (spec.id, spec.ready, spec.restart, spec.shutdown) == ("jobs", True, "permanent", None)
    async with Supervisor([spec], name="app") as app:
        assert jobs.node is not None, "ready means the node runs"
        (info,) = app.which_children()
        assert (info.id, info.status) == ("jobs", "running")
        job = await jobs.workers["gated"].enqueue({})
        assert (await wait_for_state(jobs, job.id)).state is JobState.COMPLETED
    assert jobs.node is None


async def test_a_graceful_stop_lets_jobs_finish_within_the_grace(make_jobs: MakeJobs) -> None:
    jobs = make_jobs(shutdown_grace=60.0)
    started: list[int] = []
    finish = asyncio.Event()
    _worker(jobs, started, finish)
    app = Supervisor([jobs.child_spec()], name="app")
    await app.start()
    job = await jobs.workers["gated"].enqueue({})
    await wait_until(lambda: started == [job.id], message="the job to start")
    stopping = asyncio.create_task(app.stop())
    await wait_until(lambda: jobs.node is None, message="the node to begin its stop")
    await asyncio.sleep(0.1)
    assert not stopping.done(), "the supervisor waits for the node's grace"
    finish.set()
    await asyncio.wait_for(stopping, BOUND)
    done = await jobs.get_job(job.id)
    assert done is not None
    assert (done.state, done.result) == (JobState.COMPLETED, "done")


async def test_a_graceful_stop_hands_back_a_job_still_running_after_the_grace(
    make_jobs: MakeJobs,
) -> None:
    jobs = make_jobs(shutdown_grace=0.2)
    started: list[int] = []
    _worker(jobs, started, asyncio.Event())
    app = Supervisor([jobs.child_spec()], name="app")
    await app.start()
    job = await jobs.workers["gated"].enqueue({})
    await wait_until(lambda: started == [job.id], message="the job to start")
    await asyncio.wait_for(app.stop(), BOUND)
    back = await jobs.get_job(job.id)
    assert back is not None
    assert (back.state, back.attempt, back.attempted_by) == (JobState.AVAILABLE, 0, None)
    assert app.left_running == []


async def test_hurrying_the_supervisor_cancels_running_jobs_at_once(make_jobs: MakeJobs) -> None:
    jobs = make_jobs(shutdown_grace=600.0)
    started: list[int] = []
    unwound: list[int] = []

    @jobs.worker(name="slow_to_unwind")
    async def slow_to_unwind(job: Job[Any]) -> None:
        started.append(job.id)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await asyncio.sleep(0.3)  # its cleanup outlasts the supervisor's cancel_timeout
            unwound.append(job.id)
            raise

    # The node is told to hurry, not cancelled: its own stop (cancel the job, wait for it,
    # hand it back) is not cut by the supervisor's cancel_timeout.
    app = Supervisor([jobs.child_spec()], name="app", cancel_timeout=0.1)
    await app.start()
    job = await slow_to_unwind.enqueue({})
    await wait_until(lambda: started == [job.id], message="the job to start")
    stopping = asyncio.create_task(app.stop())
    await wait_until(lambda: jobs.node is None, message="the node to begin its stop")
    app.hurry()  # what a second SIGTERM does under underway.tasks.run
    await asyncio.wait_for(stopping, BOUND)
    assert app.left_running == []
    assert unwound == [job.id]
    back = await jobs.get_job(job.id)
    assert back is not None
    assert (back.state, back.attempt) == (JobState.AVAILABLE, 0)


async def test_a_node_that_cannot_start_fails_the_childs_start(tmp_path: Path) -> None:
    jobs = Jobs(f"sqlite:///{tmp_path / 'missing' / 'dir' / 'jobs.db'}")
    with pytest.raises(ChildStartError) as failed:
        async with Supervisor([jobs.child_spec(id="node")], name="app"):
            pass
    assert isinstance(failed.value.__cause__, UnderwayError)
    with pytest.raises(UnderwayError) as raised:  # serve raises the node's own error
        await asyncio.wait_for(jobs.serve(), BOUND)
    assert not isinstance(raised.value, ChildStartError)
    assert jobs.node is None


def test_child_spec_options_are_checked(make_jobs: MakeJobs) -> None:
    jobs = make_jobs()
    spec = jobs.child_spec(id="queues", restart="transient", shutdown=30.0)
    assert (spec.id, spec.restart, spec.shutdown) == ("queues", "transient", 30.0)
    with pytest.raises(ConfigError):
        jobs.child_spec(shutdown=-1.0)


async def test_serve_runs_the_node_until_stop_is_set(make_jobs: MakeJobs) -> None:
    jobs = make_jobs()
    started: list[int] = []
    finish = asyncio.Event()
    finish.set()
    _worker(jobs, started, finish)
    stop = asyncio.Event()
    serving = asyncio.create_task(jobs.serve(stop=stop))
    await wait_until(lambda: jobs.node is not None, message="the node to run")
    job = await jobs.workers["gated"].enqueue({})
    assert (await wait_for_state(jobs, job.id)).state is JobState.COMPLETED
    stop.set()
    await asyncio.wait_for(serving, BOUND)
    assert jobs.node is None
