"""Maintenance on a running node: pruner, stager, lifeline, retry/cancel and counts.

Rows a node elsewhere (or an older version) would have written are inserted with plain SQL
through :class:`~tests.integration.conftest.Database`, on either engine.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from underway.jobs import Job, Jobs, JobState, Pruning

from ..conftest import Database, MakeJobs, wait_for_state, wait_until

PARKED = "parked"  # a queue no node in these tests runs


def add_row(
    database: Database,
    state: str,
    *,
    queue: str = PARKED,
    worker: str = "tests.parked",
    **columns: Any,
) -> int:
    """Insert one job row directly, as another process or an old version could have."""
    return database.add_job(state, queue=queue, worker=worker, **columns)


async def _existing(jobs: Jobs, ids: list[int]) -> set[int]:
    return {i for i in ids if await jobs.get_job(i) is not None}


async def _gone(jobs: Jobs, ids: list[int]) -> bool:
    return not await _existing(jobs, ids)


async def test_pruner_deletes_finished_jobs_older_than_their_state_age(
    make_jobs: MakeJobs, database: Database
) -> None:
    prune = Pruning(completed=5, cancelled=100, discarded=30, interval=0.05, limit=2)
    jobs = make_jobs(prune=prune)
    jobs.migrate_sync()
    now = time.time()
    old_completed = [add_row(database, "completed", completed_at=now - 10) for _ in range(5)]
    young_completed = add_row(database, "completed", completed_at=now - 2)
    old_discarded = add_row(database, "discarded", discarded_at=now - 40)
    young_discarded = add_row(database, "discarded", discarded_at=now - 20)
    kept_cancelled = add_row(database, "cancelled", cancelled_at=now - 50)
    old_cancelled = add_row(database, "cancelled", cancelled_at=now - 500)
    unfinished = [
        add_row(database, "available", inserted_at=now - 1000, scheduled_at=now - 1000),
        add_row(database, "scheduled", inserted_at=now - 1000, scheduled_at=now + 3600),
        add_row(database, "retryable", inserted_at=now - 1000, scheduled_at=now + 3600),
    ]
    doomed = [*old_completed, old_discarded, old_cancelled]
    kept = [young_completed, young_discarded, kept_cancelled, *unfinished]

    async with jobs:
        await wait_until(lambda: _gone(jobs, doomed), message="old finished jobs pruned")
        remaining = await _existing(jobs, kept)

    assert remaining == set(kept)


async def test_stager_makes_due_scheduled_and_retryable_jobs_available(
    make_jobs: MakeJobs, database: Database
) -> None:
    jobs = make_jobs()
    jobs.migrate_sync()
    now = time.time()
    due = [
        add_row(database, "scheduled", scheduled_at=now - 1),
        add_row(database, "retryable", scheduled_at=now - 1, attempt=1),
    ]
    not_due = [
        add_row(database, "scheduled", scheduled_at=now + 3600),
        add_row(database, "retryable", scheduled_at=now + 3600, attempt=1),
    ]
    soon = add_row(database, "scheduled", scheduled_at=now + 0.4)

    async with jobs:
        for job_id in due:
            await wait_for_state(jobs, job_id, JobState.AVAILABLE, timeout=10.0)
        became = await wait_for_state(jobs, soon, JobState.AVAILABLE, timeout=10.0)
        staged_at = time.time()
        later = [await jobs.get_job(i) for i in not_due]

    assert staged_at >= now + 0.4
    assert became.attempt == 0
    assert [j.state for j in later if j is not None] == [JobState.SCHEDULED, JobState.RETRYABLE]


async def test_lifeline_rescues_jobs_of_a_silent_node_only(
    make_jobs: MakeJobs, database: Database
) -> None:
    jobs = make_jobs(heartbeat_interval=0.2, rescue_after=1.0)  # a lifeline pass every 0.5 s
    ran: list[int] = []

    @jobs.worker
    async def resumed(job: Job[Any]) -> None:
        ran.append(job.attempt)

    jobs.migrate_sync()
    now = time.time()
    database.add_node("dead-node", started_at=now - 600, heartbeat_at=now - 60)
    database.add_node("live-node", started_at=now - 600, heartbeat_at=now)
    orphan = add_row(
        database,
        "executing",
        queue="default",
        worker=resumed.name,
        attempt=1,
        attempted_by="dead-node",
        attempted_at=now - 70,
    )
    exhausted = add_row(
        database,
        "executing",
        attempt=3,
        max_attempts=3,
        attempted_by="dead-node",
        attempted_at=now - 70,
    )
    alive = add_row(
        database, "executing", attempt=1, attempted_by="live-node", attempted_at=now - 70
    )

    async def live_node_heartbeats() -> None:
        while True:
            database.beat("live-node", time.time())
            await asyncio.sleep(0.1)

    beating = asyncio.create_task(live_node_heartbeats())
    try:
        async with jobs:
            rescued = await wait_for_state(jobs, orphan, JobState.COMPLETED)
            discarded = await wait_for_state(jobs, exhausted, JobState.DISCARDED)
            await asyncio.sleep(1.2)  # two more lifeline passes, longer than rescue_after
            untouched = await jobs.get_job(alive)
            nodes = database.nodes()
    finally:
        beating.cancel()

    assert ran == [2]
    assert rescued.attempt == 2
    assert [e.error for e in rescued.errors] == ["rescued: node dead-node stopped heartbeating"]
    assert discarded.discarded_at is not None
    assert [e.attempt for e in discarded.errors] == [3]
    assert untouched is not None
    assert untouched.state is JobState.EXECUTING
    assert untouched.errors == ()
    assert "dead-node" not in nodes
    assert "live-node" in nodes


async def test_retry_job_runs_a_discarded_job_again(make_jobs: MakeJobs) -> None:
    jobs = make_jobs()
    attempts: list[int] = []

    @jobs.worker(max_attempts=1)
    async def once_broken(job: Job[Any]) -> None:
        attempts.append(job.attempt)
        if len(attempts) == 1:
            raise RuntimeError("first run fails")

    async with jobs:
        job = await once_broken.enqueue({})
        discarded = await wait_for_state(jobs, job.id)
        retried = await jobs.retry_job(job.id)
        done = await wait_for_state(jobs, job.id, JobState.COMPLETED)

    assert discarded.state is JobState.DISCARDED
    assert retried is not None
    assert retried.state in (
        JobState.AVAILABLE,
        JobState.EXECUTING,
        JobState.COMPLETED,
    )
    assert attempts == [1, 2]
    assert done.max_attempts == 2
    assert done.discarded_at is None
    assert len(done.errors) == 1


async def test_retry_and_cancel_leave_jobs_they_do_not_apply_to(make_jobs: MakeJobs) -> None:
    jobs = make_jobs()
    gate = asyncio.Event()

    @jobs.worker
    async def held(job: Job[Any]) -> None:
        await gate.wait()

    @jobs.worker
    async def quick(job: Job[Any]) -> None: ...

    async with jobs:
        running = await held.enqueue({})
        finished = await quick.enqueue({})
        await wait_for_state(jobs, running.id, JobState.EXECUTING)
        await wait_for_state(jobs, finished.id)
        retry_running = await jobs.retry_job(running.id)
        cancel_finished = await jobs.cancel_job(finished.id)
        missing = await jobs.retry_job(10_000)
        gate.set()
        await wait_for_state(jobs, running.id)

    assert retry_running is not None
    assert retry_running.state is JobState.EXECUTING
    assert cancel_finished is not None
    assert cancel_finished.state is JobState.COMPLETED
    assert cancel_finished.errors == ()
    assert missing is None


async def test_cancel_a_waiting_job(make_jobs: MakeJobs) -> None:
    jobs = make_jobs()

    @jobs.worker(queue=PARKED)
    async def parked(job: Job[Any]) -> None: ...

    async with jobs:
        job = await parked.enqueue({})
        later = await parked.enqueue({}, schedule_in=60)
        cancelled = await jobs.cancel_job(job.id)
        cancelled_later = await jobs.cancel_job(later.id)

    for one in (cancelled, cancelled_later):
        assert one is not None
        assert one.state is JobState.CANCELLED
        assert one.cancelled_at is not None
        assert [e.error for e in one.errors] == ["cancelled: by request"]


async def test_cancel_interrupts_a_job_executing_on_this_node(make_jobs: MakeJobs) -> None:
    jobs = make_jobs()
    events: list[str] = []

    @jobs.worker(max_attempts=5)
    async def endless(job: Job[Any]) -> None:
        events.append("started")
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            events.append("interrupted")
            raise

    async with jobs:
        job = await endless.enqueue({})
        await wait_for_state(jobs, job.id, JobState.EXECUTING)
        await wait_until(lambda: events, message="job started")
        started = time.monotonic()
        await jobs.cancel_job(job.id)
        await wait_until(lambda: "interrupted" in events, message="job task interrupted")
        interrupted_after = time.monotonic() - started
        await asyncio.sleep(0.2)  # a few stage passes: it must not come back
    stored = jobs.get_job_sync(job.id)

    assert interrupted_after < 1.0
    assert events == ["started", "interrupted"]
    assert stored is not None
    assert stored.state is JobState.CANCELLED
    assert stored.attempt == 1
    assert [e.error for e in stored.errors] == ["cancelled: by request"]


async def test_counts_group_jobs_by_queue_and_state(make_jobs: MakeJobs) -> None:
    jobs = make_jobs()

    @jobs.worker
    async def quick(job: Job[Any]) -> None: ...

    @jobs.worker(queue=PARKED)
    async def parked(job: Job[Any]) -> None: ...

    async with jobs:
        assert jobs.counts_sync() == {}
        await jobs.enqueue_many(parked.new({"n": n}) for n in range(3))
        await jobs.enqueue_many(parked.new({"n": n}, schedule_in=60) for n in range(2))
        done = await jobs.enqueue_many(quick.new({"n": n}) for n in range(4))
        for job in done:
            await wait_for_state(jobs, job.id)
        counts = jobs.counts_sync()

    assert counts == {
        (PARKED, JobState.AVAILABLE): 3,
        (PARKED, JobState.SCHEDULED): 2,
        ("default", JobState.COMPLETED): 4,
    }
