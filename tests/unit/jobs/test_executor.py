"""The executor: outcomes of a job's run, and sync jobs in threads, tracked until their
thread really returns."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pytest

from underway.jobs import Cancel, Jobs, JobState, Snooze
from underway.jobs._runtime.executor import Executor
from underway.jobs.engines._inline import job_from_spec
from underway.jobs.outcomes import Ack

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


# -- outcomes ---------------------------------------------------------------------------------


def _outcomes_app() -> Jobs:
    jobs = Jobs("sqlite:///:memory:")

    @jobs.worker(name="returns", record_result=True)
    async def returns(job: Any) -> dict[str, int]:
        return {"doubled": job.args["n"] * 2}

    @jobs.worker(name="raises", backoff=30)
    async def raises(job: Any) -> None:
        raise ValueError(f"bad {job.args['n']}")

    @jobs.worker(name="snoozes")
    async def snoozes(job: Any) -> Snooze:
        return Snooze(60)

    @jobs.worker(name="cancels")
    async def cancels(job: Any) -> Cancel:
        return Cancel("not needed")

    @jobs.worker(name="hangs", timeout=0.05)
    async def hangs(job: Any) -> None:
        await asyncio.Event().wait()

    @jobs.worker(name="slow_sync", timeout=0.01)
    def slow_sync(job: Any) -> str:
        time.sleep(0.1)
        return "late"

    return jobs


async def _run(pool: ThreadPoolExecutor, worker: str, *, attempt: int = 1, n: int = 1) -> Ack:
    jobs = _outcomes_app()
    spec = jobs.workers[worker].new({"n": n})
    job = replace(job_from_spec(spec, 1), attempt=attempt, max_attempts=3)
    return await asyncio.wait_for(Executor(jobs.workers, "n", pool).run(job), WAIT)


async def test_a_return_value_completes_the_job_with_its_result(pool: ThreadPoolExecutor) -> None:
    ack = await _run(pool, "returns", n=21)
    assert (ack.state, ack.error, ack.attempt) == (JobState.COMPLETED, None, 1)
    assert ack.result == '{"doubled":42}'


async def test_an_exception_makes_the_job_retryable_after_its_backoff(
    pool: ThreadPoolExecutor,
) -> None:
    before = time.time()
    ack = await _run(pool, "raises", n=5)
    assert ack.state is JobState.RETRYABLE
    assert ack.error == "ValueError: bad 5"
    assert ack.traceback is not None
    assert "bad 5" in ack.traceback
    assert ack.scheduled_at is not None
    assert before + 29 <= ack.scheduled_at <= time.time() + 31


async def test_an_exception_on_the_last_attempt_discards_the_job(
    pool: ThreadPoolExecutor,
) -> None:
    ack = await _run(pool, "raises", attempt=3)
    assert (ack.state, ack.error, ack.scheduled_at) == (
        JobState.DISCARDED,
        "ValueError: bad 1",
        None,
    )


async def test_snooze_and_cancel(pool: ThreadPoolExecutor) -> None:
    before = time.time()
    snoozed = await _run(pool, "snoozes")
    assert (snoozed.state, snoozed.snoozed, snoozed.error) == (JobState.SCHEDULED, True, None)
    assert snoozed.scheduled_at is not None
    assert snoozed.scheduled_at >= before + 60
    cancelled = await _run(pool, "cancels")
    assert cancelled.state is JobState.CANCELLED
    assert cancelled.error is not None
    assert "not needed" in cancelled.error


async def test_a_coroutine_past_its_timeout_is_interrupted_and_retried(
    pool: ThreadPoolExecutor,
) -> None:
    ack = await _run(pool, "hangs")
    assert ack.state is JobState.RETRYABLE
    assert ack.error is not None
    assert ack.error.startswith("JobTimeout: job 1 ran longer than its timeout of 0.05s")


async def test_a_sync_job_past_its_timeout_fails_when_its_thread_returns(
    pool: ThreadPoolExecutor,
) -> None:
    ack = await _run(pool, "slow_sync")
    assert ack.state is JobState.RETRYABLE
    assert ack.error is not None
    assert ack.error.startswith("JobTimeout:")
    assert "a sync job cannot be interrupted" in ack.error
    assert ack.result is None


async def test_a_job_of_an_unknown_worker_is_discarded(pool: ThreadPoolExecutor) -> None:
    jobs = _outcomes_app()
    job = replace(job_from_spec(jobs.workers["returns"].new({"n": 1}), 1), worker="gone")
    ack = await Executor(jobs.workers, "n", pool).run(job)
    assert ack.state is JobState.DISCARDED
    assert ack.error is not None
    assert ack.error.startswith("UnknownWorker: no worker named 'gone'")
