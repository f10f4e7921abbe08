"""The SQLite engine under adverse conditions: late acks, poison rows, locks and leaks."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from underway.errors import DatabaseError, DatabaseLocked
from underway.jobs import Job, JobSpec, JobState
from underway.jobs.engines.base import JobFilter
from underway.jobs.engines.sqlite import SQLiteEngine
from underway.jobs.engines.sqlite._direct import DirectWriter
from underway.jobs.outcomes import Ack

from ..conftest import MakeJobs, wait_for_state, wait_until

QUEUE = "default"
JSON_COLUMNS = ("args", "meta", "tags", "errors", "result")
UNDECODABLE = "__undecodable__"


def spec(i: int, *, queue: str = QUEUE, priority: int = 0, max_attempts: int = 20) -> JobSpec:
    """A job of a worker no node runs, with ``{"i": i}`` as args."""
    return JobSpec(
        worker="tests.hardening",
        queue=queue,
        args={"i": i},
        args_json=json.dumps({"i": i}),
        priority=priority,
        max_attempts=max_attempts,
    )


def _hold_write_lock(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")


def _row(conn: sqlite3.Connection, job_id: int) -> dict[str, Any]:
    cursor = conn.execute("SELECT * FROM underway_jobs WHERE id = ?", (job_id,))
    names = [d[0] for d in cursor.description]
    return dict(zip(names, cursor.fetchone(), strict=True))


# -- 1. stale acks and releases -------------------------------------------------------------


async def _claimed_twice(
    first: SQLiteEngine, second: SQLiteEngine, first_node: str, second_node: str
) -> Job[Any]:
    """One job claimed by ``first_node``, rescued (no heartbeats), claimed by ``second_node``."""
    await first.open()
    await second.open()
    (job,) = await first.insert([spec(1)])
    (claim,) = await first.fetch(QUEUE, 1, first_node, time.time())
    assert (claim.attempt, claim.attempted_by) == (1, first_node)
    now = time.time()
    assert await second.rescue(stale_before=now, now=now) == {QUEUE: 1}
    (again,) = await second.fetch(QUEUE, 1, second_node, time.time())
    assert (again.id, again.attempt, again.attempted_by) == (job.id, 2, second_node)
    return again


async def test_a_late_ack_and_release_from_a_rescued_node_change_nothing(
    sqlite_engines: Callable[[str], SQLiteEngine],
) -> None:
    a, b = sqlite_engines(""), sqlite_engines("")
    job = await _claimed_twice(a, b, "node-a", "node-b")
    now = time.time()

    await a.ack([Ack(job.id, JobState.COMPLETED, now, 1, result='"late"')], "node-a")
    await a.ack(
        [Ack(job.id, JobState.RETRYABLE, now, 1, scheduled_at=now + 60, error="late")], "node-a"
    )
    released = await a.release([(job.id, 1)], "node-a", now)
    after_a = b.get_job(job.id)
    await b.ack([Ack(job.id, JobState.COMPLETED, now, 2, result='"b"')], "node-b")
    after_b = a.get_job(job.id)

    assert released == 0
    assert after_a is not None
    assert after_b is not None
    assert (after_a.state, after_a.attempt, after_a.attempted_by) == (
        JobState.EXECUTING,
        2,
        "node-b",
    )
    assert after_a.result is None
    assert [e.error for e in after_a.errors] == ["rescued: node node-a stopped heartbeating"]
    assert (after_b.state, after_b.result) == (JobState.COMPLETED, "b")


async def test_a_late_ack_of_an_earlier_attempt_on_the_same_node_changes_nothing(
    sqlite_engines: Callable[[str], SQLiteEngine],
) -> None:
    a, b = sqlite_engines(""), sqlite_engines("")
    job = await _claimed_twice(a, b, "node-a", "node-a")
    now = time.time()

    await a.ack([Ack(job.id, JobState.COMPLETED, now, 1, result='"first"')], "node-a")
    after_late = a.get_job(job.id)
    await b.ack([Ack(job.id, JobState.COMPLETED, now, 2, result='"second"')], "node-a")
    after_current = a.get_job(job.id)

    assert after_late is not None

    assert after_current is not None
    assert (after_late.state, after_late.attempt) == (JobState.EXECUTING, 2)
    assert (after_current.state, after_current.result) == (JobState.COMPLETED, "second")


# -- 2. poison rows -------------------------------------------------------------------------


def _poison(conn: sqlite3.Connection, job_id: int, column: str, text: str) -> None:
    conn.execute(f"UPDATE underway_jobs SET {column} = ? WHERE id = ?", (text, job_id))


async def test_fetch_discards_undecodable_rows_and_returns_the_good_ones(
    sqlite_engines: Callable[[str], SQLiteEngine], raw_db: Callable[[], sqlite3.Connection]
) -> None:
    engine = sqlite_engines("")
    await engine.open()
    inserted = await engine.insert([spec(i) for i in range(10)])
    raw = raw_db()
    poisoned = {job.id: column for job, column in zip(inserted[1::2], JSON_COLUMNS, strict=True)}
    for job_id, column in poisoned.items():
        _poison(raw, job_id, column, "{not json")
    good = [j.id for j in inserted if j.id not in poisoned]

    claimed = await engine.fetch(QUEUE, 100, "node-a", time.time())

    assert [j.id for j in claimed] == good
    assert all(j.state is JobState.EXECUTING and j.attempted_by == "node-a" for j in claimed)
    for job_id, column in poisoned.items():
        row = _row(raw, job_id)
        assert row["state"] == "discarded"
        assert row["discarded_at"] is not None
        errors = json.loads(row["errors"])  # valid again even when it was the broken column
        assert errors[-1]["error"].startswith(f"undecodable job row: {column}: ")
        assert errors[-1]["attempt"] == 1
    assert await engine.fetch(QUEUE, 100, "node-a", time.time()) == []


async def test_list_and_get_mark_undecodable_fields_instead_of_raising(
    sqlite_engines: Callable[[str], SQLiteEngine], raw_db: Callable[[], sqlite3.Connection]
) -> None:
    engine = sqlite_engines("")
    await engine.open()
    inserted = await engine.insert([spec(i) for i in range(len(JSON_COLUMNS) + 1)])
    raw = raw_db()
    for job, column in zip(inserted, JSON_COLUMNS, strict=False):
        _poison(raw, job.id, column, f"<{column} broken")

    listed = {j.id: j for j in engine.list_jobs(JobFilter())}
    by_column = {c: engine.get_job(j.id) for j, c in zip(inserted, JSON_COLUMNS, strict=False)}

    assert len(listed) == len(inserted)
    assert listed[inserted[-1].id].args == {"i": len(JSON_COLUMNS)}
    args, meta, tags, errors, result = (by_column[c] for c in JSON_COLUMNS)
    assert args is not None
    assert args.args == {UNDECODABLE: "<args broken"}
    assert meta is not None
    assert meta.meta == {UNDECODABLE: "<meta broken"}
    assert tags is not None
    assert tags.tags == (f"{UNDECODABLE}: <tags broken",)
    assert errors is not None
    assert len(errors.errors) == 1
    assert errors.errors[0].error.startswith(f"{UNDECODABLE}: ")
    assert "<errors broken" in errors.errors[0].error
    assert result is not None
    assert result.result == {UNDECODABLE: "<result broken"}
    assert args.state is JobState.AVAILABLE
    assert args.id == inserted[0].id


async def test_a_node_runs_the_good_jobs_of_a_batch_with_a_poison_row(
    make_jobs: MakeJobs, raw_db: Callable[[], sqlite3.Connection]
) -> None:
    jobs = make_jobs()
    ran: list[int] = []

    @jobs.worker
    async def work(job: Job[Any]) -> None:
        ran.append(job.args["n"])

    queued = [work.enqueue_sync({"n": n}) for n in range(5)]
    poison = queued[2]
    _poison(raw_db(), poison.id, "args", '{"n": ')

    async with jobs:
        finished = [await wait_for_state(jobs, j.id, timeout=5.0) for j in queued]
        listed = jobs.list_jobs_sync()

    states = {j.id: j.state for j in finished}
    assert states.pop(poison.id) is JobState.DISCARDED
    assert set(states.values()) == {JobState.COMPLETED}
    assert sorted(ran) == [0, 1, 3, 4]
    discarded = next(j for j in finished if j.id == poison.id)
    assert discarded.args == {UNDECODABLE: '{"n": '}
    assert discarded.errors[-1].error.startswith("undecodable job row: args: ")
    assert len(listed) == 5


async def test_rescue_and_failed_acks_cope_with_an_undecodable_errors_column(
    sqlite_engines: Callable[[str], SQLiteEngine], raw_db: Callable[[], sqlite3.Connection]
) -> None:
    engine = sqlite_engines("")
    await engine.open()
    inserted = await engine.insert([spec(i) for i in range(4)])
    claimed = await engine.fetch(QUEUE, 4, "node-a", time.time())
    raw = raw_db()
    _poison(raw, inserted[0].id, "errors", "[broken")
    _poison(raw, inserted[1].id, "errors", "[broken")
    now = time.time()

    failed = Ack(inserted[2].id, JobState.RETRYABLE, now, 1, scheduled_at=now + 60, error="x")
    failed_poison = Ack(inserted[1].id, JobState.RETRYABLE, now, 1, scheduled_at=now, error="y")
    await engine.ack([failed, failed_poison], "node-a")
    rescued = await engine.rescue(stale_before=now + 1, now=now)

    assert len(claimed) == 4
    assert rescued == {QUEUE: 2}  # the poison row and the one still executing
    states = {j.id: j.state for j in engine.list_jobs(JobFilter())}
    assert states[inserted[0].id] is JobState.AVAILABLE
    assert states[inserted[1].id] is JobState.RETRYABLE
    assert states[inserted[2].id] is JobState.RETRYABLE
    assert states[inserted[3].id] is JobState.AVAILABLE
    for job in inserted[:2]:
        assert isinstance(json.loads(_row(raw, job.id)["errors"]), list)


# -- 3. error mapping -----------------------------------------------------------------------


async def test_constraint_errors_become_database_errors_and_keep_the_connection(
    sqlite_engines: Callable[[str], SQLiteEngine], db_path: Path
) -> None:
    engine = sqlite_engines("")
    await engine.open()
    conn = engine._conn
    bad = spec(0, priority=12)  # the table's CHECK rejects it

    errors: list[BaseException] = []
    for batch in ([bad], [*(spec(i) for i in range(60)), bad]):  # direct, then database thread
        with pytest.raises(DatabaseError) as info:
            await engine.insert(batch)
        errors.append(info.value)

    for error in errors:
        assert not isinstance(error, DatabaseLocked)
        assert str(db_path) in str(error)
        assert "CHECK constraint failed" in str(error)
        assert isinstance(error.__cause__, sqlite3.IntegrityError)
    assert engine._conn is conn
    assert engine.counts() == {}
    assert [j.args for j in await engine.insert([spec(1)])] == [{"i": 1}]


async def test_a_lock_is_reported_as_what_happened_and_keeps_the_connection(
    sqlite_engines: Callable[[str], SQLiteEngine], raw_db: Callable[[], sqlite3.Connection]
) -> None:
    engine = sqlite_engines("?busy_timeout=0.2")
    await engine.open()
    conn = engine._conn
    holder = raw_db()
    _hold_write_lock(holder)
    try:
        with pytest.raises(DatabaseLocked) as info:
            await engine.stage(time.time())
    finally:
        holder.execute("ROLLBACK")

    message = str(info.value)
    assert "is locked by another connection (waited up to busy_timeout=0.2s)" in message
    assert engine._conn is conn
    assert (await engine.stage(time.time())).count == 0


# -- 4. a failed COMMIT ---------------------------------------------------------------------


def test_a_failed_commit_leaves_no_open_transaction(tmp_path: Path) -> None:
    path = tmp_path / "rollback-journal.db"
    writer = sqlite3.connect(path, timeout=0.1, isolation_level=None)
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        assert writer.execute("PRAGMA journal_mode=DELETE").fetchone() == ("delete",)
        writer.execute("CREATE TABLE t (x INTEGER)")
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM t").fetchone()  # a reader blocks the commit

        with pytest.raises(sqlite3.OperationalError, match="locked"):  # noqa: SIM117
            with SQLiteEngine._write(writer):
                writer.execute("INSERT INTO t VALUES (1)")

        assert not writer.in_transaction
        reader.execute("COMMIT")
        writer.execute("INSERT INTO t VALUES (2)")  # autocommit works again
        assert reader.execute("SELECT x FROM t").fetchall() == [(2,)]
    finally:
        writer.close()
        reader.close()


# -- 5. WAL refused -------------------------------------------------------------------------


def test_a_refused_wal_mode_is_logged_once(
    db_url: str, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = SQLiteEngine(db_url)
    temporary = sqlite3.connect("")  # SQLite keeps a temporary database out of WAL mode
    caplog.set_level(logging.WARNING, logger="underway.jobs")
    try:
        first = engine._enable_wal(temporary)
        second = engine._enable_wal(temporary)
    finally:
        temporary.close()

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert (first, second) == ("delete", "delete")
    assert len(warnings) == 1
    assert str(db_path) in warnings[0]
    assert "'delete'" in warnings[0]


async def test_a_file_in_wal_mode_logs_nothing(
    sqlite_engines: Callable[[str], SQLiteEngine],
    raw_db: Callable[[], sqlite3.Connection],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="underway.jobs")
    await sqlite_engines("").open()

    assert raw_db().execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


# -- 6. direct writes: connections of finished threads, synchronous=FULL --------------------


def test_connections_of_finished_threads_are_closed(tmp_path: Path) -> None:
    path = str(tmp_path / "threads.db")
    setup = sqlite3.connect(path, isolation_level=None)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE t (x INTEGER)")
    writer = DirectWriter(path, synchronous="NORMAL", checkpoint=lambda: None)
    seen: list[int] = []

    def insert(i: int) -> None:
        done = False
        while not done:  # another of these threads may hold the lock for a moment
            done, _ = writer.try_write(lambda c: c.execute("INSERT INTO t VALUES (?)", (i,)))
        seen.append(writer.open_connections)

    try:
        for group in range(10):
            threads = [threading.Thread(target=insert, args=(group * 5 + k,)) for k in range(5)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        assert setup.execute("SELECT COUNT(*) FROM t").fetchone() == (50,)
        assert max(seen) <= 10
        assert writer.open_connections <= 5
    finally:
        writer.close()
        setup.close()
    assert writer.open_connections == 0


@pytest.mark.parametrize(("synchronous", "direct"), [("NORMAL", 1), ("FULL", 0), ("EXTRA", 0)])
async def test_direct_writes_are_skipped_when_each_commit_syncs_to_disk(
    sqlite_engines: Callable[[str], SQLiteEngine], synchronous: str, direct: int
) -> None:
    engine = sqlite_engines(f"?synchronous={synchronous}")
    await engine.open()

    (job,) = await engine.insert([spec(1)])

    assert engine._direct.open_connections == direct
    assert engine.get_job(job.id) is not None


# -- 7. idle producers do not write ---------------------------------------------------------


async def test_fetch_on_an_empty_queue_does_not_wait_for_the_write_lock(
    sqlite_engines: Callable[[str], SQLiteEngine], raw_db: Callable[[], sqlite3.Connection]
) -> None:
    engine = sqlite_engines("?busy_timeout=5")
    await engine.open()
    await engine.insert([spec(1, queue="other")])
    holder = raw_db()
    _hold_write_lock(holder)
    try:
        started = time.monotonic()
        claimed = await engine.fetch(QUEUE, 10, "node-a", time.time())
        elapsed = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")

    assert claimed == []
    assert elapsed < 2.5  # did not sit out the 5 s busy timeout
    assert [j.args for j in await engine.fetch("other", 10, "node-a", time.time())] == [{"i": 1}]


# -- 8. enqueueing in the app's transaction before the engine ever opened the file ---------


async def test_enqueue_in_an_app_transaction_on_an_unmigrated_file_says_to_migrate(
    sqlite_engines: Callable[[str], SQLiteEngine], db_path: Path
) -> None:
    app = sqlite3.connect(db_path, timeout=1.0)
    try:
        app.execute("CREATE TABLE users (name TEXT)")
        app.commit()
        app.execute("INSERT INTO users VALUES ('ann')")  # opens the app's transaction
        engine = sqlite_engines("?busy_timeout=10")
        started = time.monotonic()
        with pytest.raises(DatabaseError) as info:
            engine.insert_sync([spec(1)], conn=app)
        elapsed = time.monotonic() - started
        app.rollback()

        assert elapsed < 5.0  # did not sit out the 10 s busy timeout
        message = str(info.value)
        assert str(db_path) in message
        assert "underway migrate" in message
        assert "migrate_sync()" in message

        await asyncio.to_thread(engine.migrate)
        app.execute("INSERT INTO users VALUES ('bob')")
        (job,) = engine.insert_sync([spec(2)], conn=app)
        app.commit()
    finally:
        app.close()
    stored = engine.get_job(job.id)
    assert stored is not None
    assert stored.args == {"i": 2}


async def test_enqueue_in_an_app_transaction_on_a_migrated_file_opens_the_engine(
    sqlite_engines: Callable[[str], SQLiteEngine], db_path: Path
) -> None:
    await asyncio.to_thread(sqlite_engines("").migrate)
    app = sqlite3.connect(db_path, timeout=1.0)
    try:
        app.execute("CREATE TABLE users (name TEXT)")
        app.commit()
        app.execute("INSERT INTO users VALUES ('ann')")
        fresh = sqlite_engines("?busy_timeout=1")
        (job,) = fresh.insert_sync([spec(1)], conn=app)
        app.commit()
    finally:
        app.close()

    stored = await wait_until(lambda: fresh.get_job(job.id), message="job committed")
    assert stored.args == {"i": 1}
