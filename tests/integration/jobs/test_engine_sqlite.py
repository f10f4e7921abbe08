"""The SQLite engine on real files: claim order, concurrent claims, bulk insert, errors."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from underway.errors import DatabaseError, DatabaseLocked
from underway.jobs import Job, Jobs, JobSpec, JobState
from underway.jobs.engines.sqlite import SQLiteEngine

from ..conftest import MakeJobs, wait_for_state

QUEUE = "default"


def spec(i: int, *, priority: int = 0, scheduled_at: float | None = None) -> JobSpec:
    """A job of a worker no node runs, with ``{"i": i}`` as args."""
    return JobSpec(
        worker="tests.engine",
        queue=QUEUE,
        args={"i": i},
        args_json=f'{{"i":{i}}}',
        priority=priority,
        scheduled_at=scheduled_at,
    )


async def test_fetch_claims_jobs_in_start_order(
    sqlite_engines: Callable[[str], SQLiteEngine],
) -> None:
    engine = sqlite_engines("")
    await engine.open()
    now = time.time()
    plan = [(3, now - 5), (0, now - 1), (0, now - 9), (3, now - 5), (1, now - 2), (0, now - 1)]
    inserted = await engine.insert(
        [spec(i, priority=p, scheduled_at=at) for i, (p, at) in enumerate(plan)]
    )

    claimed = await engine.fetch(QUEUE, 100, "node-a", now)

    expected = sorted(range(len(plan)), key=lambda i: (plan[i][0], plan[i][1], inserted[i].id))
    assert [j.args["i"] for j in claimed] == expected == [2, 1, 5, 4, 0, 3]
    assert all(j.state is JobState.EXECUTING for j in claimed)
    assert all(j.attempt == 1 and j.attempted_by == "node-a" for j in claimed)
    assert await engine.fetch(QUEUE, 100, "node-a", now) == []


async def test_fetch_takes_only_due_available_jobs_of_its_queue(
    sqlite_engines: Callable[[str], SQLiteEngine],
) -> None:
    engine = sqlite_engines("")
    await engine.open()
    now = time.time()
    later = spec(1, scheduled_at=now + 60)
    elsewhere = JobSpec(worker="w", queue="other", args={}, args_json="{}")
    due = spec(2)
    await engine.insert([later, elsewhere, due])

    claimed = await engine.fetch(QUEUE, 10, "node-a", now)

    assert [j.args for j in claimed] == [{"i": 2}]


async def test_two_engines_fetching_concurrently_never_claim_a_job_twice(
    sqlite_engines: Callable[[str], SQLiteEngine], raw_db: Callable[[], sqlite3.Connection]
) -> None:
    first, second = sqlite_engines(""), sqlite_engines("")
    await first.open()
    await second.open()
    total = 3000
    inserted = await first.insert([spec(i) for i in range(total)])

    # Each loop's first claim is made before any loop claims again. SQLite's busy handler
    # is not fair: an engine claiming back to back can hold the write lock while the other
    # sleeps between its tries, so without this one engine could take all the jobs first.
    first_claims = asyncio.Barrier(4)

    async def claim(engine: SQLiteEngine, node: str, batch: int) -> list[Job[Any]]:
        got: list[Job[Any]] = []
        while True:
            jobs = await engine.fetch(QUEUE, batch, node, time.time())
            if not got:
                await first_claims.wait()
            if not jobs:
                return got
            got.extend(jobs)

    async with asyncio.TaskGroup() as tasks:  # one failing loop cancels the others' waits
        loops = [
            tasks.create_task(claim(first, "a", 7)),
            tasks.create_task(claim(second, "b", 5)),
            tasks.create_task(claim(first, "c", 3)),
            tasks.create_task(claim(second, "d", 11)),
        ]
    results = [loop.result() for loop in loops]

    claims = Counter(j.id for group in results for j in group)
    assert sorted(i for i, n in claims.items() if n > 1) == []  # no job claimed twice
    assert {j.id for j in inserted} - set(claims) == set()  # none left unclaimed
    assert sum(claims.values()) == total
    assert all(len(group) > 0 for group in results)  # every loop, so both engines, took part
    expected: dict[int, tuple[str, int, str]] = {}
    for group, node in zip(results, "abcd", strict=True):
        assert all(j.attempted_by == node and j.attempt == 1 for j in group)
        # each claim comes back in start order
        assert [j.id for j in group] == sorted(j.id for j in group)
        expected.update((j.id, ("executing", 1, node)) for j in group)
    # the table agrees: each job executing in its first attempt, by the loop that got it
    rows = raw_db().execute("SELECT id, state, attempt, attempted_by FROM underway_jobs")
    assert {row[0]: tuple(row[1:]) for row in rows} == expected


async def test_bulk_insert_of_5000_jobs_returns_ids_in_order(
    sqlite_engines: Callable[[str], SQLiteEngine], raw_db: Callable[[], sqlite3.Connection]
) -> None:
    engine = sqlite_engines("")
    await engine.open()
    count = 5000

    inserted = await engine.insert([spec(i) for i in range(count)])

    assert len(inserted) == count
    assert [j.args["i"] for j in inserted] == list(range(count))
    ids = [j.id for j in inserted]
    assert ids == sorted(ids)
    assert len(set(ids)) == count
    rows = raw_db().execute("SELECT id, json_extract(args, '$.i') FROM underway_jobs").fetchall()
    assert dict(rows) == {j.id: j.args["i"] for j in inserted}


async def test_migrate_is_idempotent(
    sqlite_engines: Callable[[str], SQLiteEngine], raw_db: Callable[[], sqlite3.Connection]
) -> None:
    engine = sqlite_engines("")
    first = await asyncio.to_thread(engine.migrate)
    await engine.insert([spec(1)])
    again = await asyncio.to_thread(engine.migrate)
    other = sqlite_engines("")
    from_other = await asyncio.to_thread(other.migrate)

    assert first == ["0001_initial", "0002_signals_leases_cron", "0003_counters"]
    assert again == []
    assert from_other == []
    conn = raw_db()
    assert conn.execute("SELECT version FROM underway_migrations").fetchall() == [(1,), (2,), (3,)]
    assert conn.execute("SELECT COUNT(*) FROM underway_jobs").fetchone() == (1,)


async def test_a_corrupt_file_raises_a_clear_database_error(
    db_path: Path, make_jobs: MakeJobs
) -> None:
    db_path.write_bytes(os.urandom(16384))
    jobs = make_jobs()

    with pytest.raises(DatabaseError) as info:
        await jobs.start()

    assert not isinstance(info.value, DatabaseLocked)
    assert str(db_path) in str(info.value)
    assert "not a database" in str(info.value)
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)
    assert jobs.node is None
    await jobs.stop()


async def test_a_long_write_transaction_raises_database_locked_after_busy_timeout(
    sqlite_engines: Callable[[str], SQLiteEngine], raw_db: Callable[[], sqlite3.Connection]
) -> None:
    engine = sqlite_engines("?busy_timeout=0.2")
    await engine.open()
    holder = raw_db()
    holder.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseLocked) as info:
            await engine.insert([spec(1)])
        elapsed = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")

    assert 0.15 <= elapsed < 2.0
    message = str(info.value)
    assert "is locked" in message
    assert "busy_timeout=0.2s" in message
    assert (await engine.insert([spec(2)]))[0].args == {"i": 2}  # usable once released


async def test_a_running_node_survives_a_lock_and_continues_after_it(
    make_jobs: MakeJobs,
    raw_db: Callable[[], sqlite3.Connection],
    caplog: pytest.LogCaptureFixture,
) -> None:
    jobs: Jobs = make_jobs(url_options="?busy_timeout=0.2")
    ran: list[int] = []

    @jobs.worker
    async def work(job: Job[Any]) -> None:
        ran.append(job.args["n"])

    caplog.set_level(logging.WARNING, logger="underway.jobs")
    async with jobs:
        first = await work.enqueue({"n": 1})
        await wait_for_state(jobs, first.id)
        holder = raw_db()
        holder.execute("BEGIN IMMEDIATE")
        now = time.time()
        holder.execute(
            "INSERT INTO underway_jobs (state, queue, worker, args, inserted_at, scheduled_at)"
            " VALUES ('available', 'default', ?, '{\"n\": 2}', ?, ?)",
            (work.name, now, now),
        )
        (job_id,) = holder.execute("SELECT last_insert_rowid()").fetchone()
        await asyncio.sleep(0.8)  # the node's writes hit the lock several times
        holder.execute("COMMIT")
        done = await wait_for_state(jobs, job_id, timeout=8.0)

    locked = [r.getMessage() for r in caplog.records if "is locked" in r.getMessage()]
    # an idle producer only reads; the node's periodic writers (stager, heartbeat) wait
    assert any("failed" in m for m in locked)
    assert done.state is JobState.COMPLETED
    assert ran == [1, 2]
