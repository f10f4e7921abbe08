"""A node keeps its promises when workers, backoffs or the database misbehave."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from contextlib import closing
from typing import Any

from underway.jobs import Job, JobState

from ..conftest import Database, MakeJobs, wait_for_state, wait_until

# Another connection's statements that take the write lock on the jobs: the whole file on
# SQLite, the table on PostgreSQL (reads go on, writes wait).
WRITE_LOCK = {
    "sqlite": ["BEGIN IMMEDIATE"],
    "postgres": ["BEGIN", "LOCK TABLE underway_jobs IN EXCLUSIVE MODE"],
}


class Abort(BaseException):
    """Not an Exception: raised by a job body that misbehaves."""


async def test_graceful_stop_writes_every_ack_while_another_connection_holds_the_lock(
    make_jobs: MakeJobs, database: Database
) -> None:
    waits = "" if database.postgres else "?busy_timeout=5"  # PostgreSQL waits for locks
    jobs = make_jobs(url_options=waits, queues={"default": 2}, shutdown_grace=10)
    locked = threading.Event()

    @jobs.worker(max_attempts=1)
    async def work(job: Job[Any]) -> None:
        await asyncio.sleep(job.args["s"])

    def hold_lock() -> None:
        with closing(database.connect()) as conn:
            for statement in WRITE_LOCK[database.kind]:
                conn.execute(statement)
            locked.set()
            time.sleep(1.5)
            conn.execute("COMMIT")

    a = await work.enqueue({"s": 0.5})
    b = await work.enqueue({"s": 0.7})
    await jobs.start()
    await wait_until(lambda: jobs.get_job_sync(b.id).state is JobState.EXECUTING)  # type: ignore[union-attr]
    holder = threading.Thread(target=hold_lock)
    holder.start()
    await asyncio.to_thread(locked.wait)
    started = time.monotonic()
    await jobs.stop()
    stopped_after = time.monotonic() - started
    await asyncio.to_thread(holder.join)
    states = [jobs.get_job_sync(i).state for i in (a.id, b.id)]  # type: ignore[union-attr]
    assert states == [JobState.COMPLETED, JobState.COMPLETED]
    assert stopped_after > 1.2, "the acks waited for the lock (jobs end within 0.7 s)"


async def test_a_base_exception_from_a_job_fails_the_job_not_the_node(make_jobs: MakeJobs) -> None:
    jobs = make_jobs()

    @jobs.worker(max_attempts=1)
    async def aborts(job: Job[Any]) -> None:
        raise Abort("stop everything")

    @jobs.worker(max_attempts=1)
    def exits(job: Job[Any]) -> None:
        raise SystemExit(3)

    @jobs.worker
    async def fine(job: Job[Any]) -> None:
        return None

    async with jobs:
        first = await aborts.enqueue({})
        second = await exits.enqueue({})
        done = [await wait_for_state(jobs, j.id) for j in (first, second)]
        later = await fine.enqueue({})
        assert (await wait_for_state(jobs, later.id)).state is JobState.COMPLETED
    assert [j.state for j in done] == [JobState.DISCARDED, JobState.DISCARDED]
    assert done[0].errors[0].error == "Abort: stop everything"
    assert done[1].errors[0].error.startswith("SystemExit")


async def test_a_failing_backoff_falls_back_to_the_default(make_jobs: MakeJobs) -> None:
    jobs = make_jobs()

    def broken(job: Job[Any]) -> float:
        raise ValueError("bug in backoff")

    @jobs.worker(max_attempts=3, backoff=broken)
    async def fails(job: Job[Any]) -> None:
        raise RuntimeError("boom")

    async with jobs:
        job = await fails.enqueue({})
        retry = await wait_for_state(jobs, job.id, JobState.RETRYABLE)
    assert retry.scheduled_at is not None
    assert retry.attempted_at is not None
    delay = (retry.scheduled_at - retry.attempted_at).total_seconds()
    assert 15 < delay < 20  # the default: 15 + 2**1 seconds plus up to 10%


async def test_an_async_body_behind_a_plain_decorator_is_awaited(make_jobs: MakeJobs) -> None:
    jobs = make_jobs()
    ran: list[int] = []

    def logged(fn: Callable[[Job[Any]], Any]) -> Callable[[Job[Any]], Any]:
        def wrapper(job: Job[Any]) -> Any:
            return fn(job)

        return wrapper

    @jobs.worker
    @logged
    async def charge(job: Job[Any]) -> str:
        ran.append(job.id)
        return "charged"

    async with jobs:
        job = await charge.enqueue({})
        done = await wait_for_state(jobs, job.id)
    assert done.state is JobState.COMPLETED
    assert ran == [job.id]


async def test_sync_jobs_run_at_a_limit_scaled_up_at_runtime(make_jobs: MakeJobs) -> None:
    jobs = make_jobs(queues={"default": 1})
    live = peak = 0
    lock = threading.Lock()

    @jobs.worker(timeout=5)
    def work(job: Job[Any]) -> None:
        nonlocal live, peak
        with lock:
            live += 1
            peak = max(peak, live)
        time.sleep(0.3)
        with lock:
            live -= 1

    ids = [(await work.enqueue({"i": i})).id for i in range(4)]
    async with jobs:
        await jobs.scale_queue("default", 4, local_only=True)
        for i in ids:
            assert (await wait_for_state(jobs, i)).state is JobState.COMPLETED
    assert peak == 4


async def test_an_embedded_stop_waits_for_a_sync_job_past_the_grace(make_jobs: MakeJobs) -> None:
    jobs = make_jobs(shutdown_grace=0.1)
    started = threading.Event()
    runs: list[int] = []

    @jobs.worker
    def slow(job: Job[Any]) -> None:
        runs.append(job.attempt)
        started.set()
        time.sleep(0.6)

    job = await slow.enqueue({})
    await jobs.start()
    await asyncio.to_thread(started.wait)
    await jobs.stop()  # the thread cannot be stopped: the node waits, heartbeating
    done = jobs.get_job_sync(job.id)
    assert done is not None
    assert done.state is JobState.COMPLETED
    assert runs == [1]
    assert jobs.left_running == 0


async def test_cancelling_a_running_sync_job_keeps_its_slot_until_the_thread_ends(
    make_jobs: MakeJobs,
) -> None:
    jobs = make_jobs(queues={"default": 1})
    release = threading.Event()
    order: list[str] = []

    @jobs.worker
    def blocking(job: Job[Any]) -> None:
        order.append(f"start {job.args['n']}")
        release.wait(5)
        order.append(f"end {job.args['n']}")

    async with jobs:
        first = await blocking.enqueue({"n": 1})
        await wait_until(lambda: order == ["start 1"])
        await blocking.enqueue({"n": 2})
        cancelled = await jobs.cancel_job(first.id)
        assert cancelled is not None
        assert cancelled.state is JobState.CANCELLED
        await asyncio.sleep(0.3)
        assert order == ["start 1"], "the queue's only slot is still taken by the thread"
        release.set()
        await wait_until(lambda: order[-1:] == ["end 2"])
    assert order == ["start 1", "end 1", "start 2", "end 2"]
    assert jobs.get_job_sync(first.id).state is JobState.CANCELLED  # type: ignore[union-attr]
