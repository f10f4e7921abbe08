"""The SQLite engine's coordination between nodes: signals, leases, cron slots, migration 0002.

Each engine is one node with its own connection; several engines on one file behave as
several processes would.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from underway.errors import DatabaseError
from underway.jobs import Job, JobSpec, JobState
from underway.jobs.engines._sql import migrations, split_statements
from underway.jobs.engines.base import JobFilter
from underway.jobs.engines.sqlite import SQLiteEngine

LEASE = "leader"


def spec(i: int, **fields: Any) -> JobSpec:
    """A job of a worker no node runs, with ``{"i": i}`` as args."""
    return JobSpec(
        worker="tests.cron", queue="cron", args={"i": i}, args_json=f'{{"i":{i}}}', **fields
    )


@pytest.fixture
async def engines(db_url: str) -> AsyncIterator[Callable[[], SQLiteEngine]]:
    """Opens engines (nodes) on the test's file, closed at teardown."""
    opened: list[SQLiteEngine] = []

    def make() -> SQLiteEngine:
        engine = SQLiteEngine(db_url)
        opened.append(engine)
        return engine

    yield make
    for engine in opened:
        await engine.close()


# -- signals --------------------------------------------------------------------------------


async def test_every_node_sees_every_signal_published_after_its_first_read(
    engines: Callable[[], SQLiteEngine],
) -> None:
    first, second = engines(), engines()
    await first.publish({"action": "before anyone listened"})
    assert await first.signals() == []
    assert await second.signals() == []

    await first.publish({"action": "pause", "queue": "mail"})
    await second.publish({"action": "scale", "queue": "mail", "limit": 3})

    sent = [{"action": "pause", "queue": "mail"}, {"action": "scale", "queue": "mail", "limit": 3}]
    assert await first.signals() == sent
    assert await second.signals() == sent
    assert await first.signals() == []  # each signal is handed over once per node

    third = engines()
    assert await third.signals() == []  # a later node does not see what came before it
    await second.publish({"action": "resume", "queue": "mail"})
    for node in (first, second, third):
        assert await node.signals() == [{"action": "resume", "queue": "mail"}]


async def test_publish_forgets_signals_older_than_a_minute(
    engines: Callable[[], SQLiteEngine], raw_db: Callable[[], sqlite3.Connection]
) -> None:
    engine = engines()
    await engine.publish({"n": 1})
    conn = raw_db()
    conn.execute("UPDATE underway_signals SET at = at - 61")
    await engine.publish({"n": 2})
    await engine.publish({"n": 3})

    payloads = [json.loads(p) for (p,) in conn.execute("SELECT payload FROM underway_signals")]
    assert payloads == [{"n": 2}, {"n": 3}]


async def test_a_stored_signal_that_is_not_a_json_object_is_skipped(
    engines: Callable[[], SQLiteEngine],
    raw_db: Callable[[], sqlite3.Connection],
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = engines()
    assert await engine.signals() == []
    conn = raw_db()
    for payload in ("{not json", "[1, 2]"):
        conn.execute(
            "INSERT INTO underway_signals (at, payload) VALUES (?, ?)", (time.time(), payload)
        )
    await engine.publish({"action": "resume"})

    with caplog.at_level(logging.WARNING, logger="underway.jobs"):
        assert await engine.signals() == [{"action": "resume"}]
    assert sum("not a JSON object" in r.getMessage() for r in caplog.records) == 2
    assert await engine.signals() == []


async def test_a_signal_that_is_not_json_fails_at_the_caller(
    engines: Callable[[], SQLiteEngine],
) -> None:
    engine = engines()
    with pytest.raises(TypeError):
        await engine.publish({"when": object()})


# -- leases ---------------------------------------------------------------------------------


def lease_row(conn: sqlite3.Connection) -> tuple[str, float] | None:
    row = conn.execute(
        "SELECT node, expires_at FROM underway_leases WHERE name = ?", (LEASE,)
    ).fetchone()
    return None if row is None else (row[0], row[1])


async def test_a_lease_is_held_by_one_node_until_it_expires(
    engines: Callable[[], SQLiteEngine], raw_db: Callable[[], sqlite3.Connection]
) -> None:
    one, two = engines(), engines()
    now = 1000.0

    assert await one.acquire_lease(LEASE, "n1", 10, now)
    assert not await two.acquire_lease(LEASE, "n2", 10, now + 1)
    assert lease_row(raw_db()) == ("n1", now + 10)

    assert await one.acquire_lease(LEASE, "n1", 10, now + 5)  # renewed until now + 15
    assert lease_row(raw_db()) == ("n1", now + 15)
    assert not await two.acquire_lease(LEASE, "n2", 10, now + 12)

    assert await two.acquire_lease(LEASE, "n2", 10, now + 15)  # expired: taken over
    assert not await one.acquire_lease(LEASE, "n1", 10, now + 16)
    assert lease_row(raw_db()) == ("n2", now + 25)


async def test_leases_with_different_names_are_independent(
    engines: Callable[[], SQLiteEngine],
) -> None:
    one, two = engines(), engines()
    assert await one.acquire_lease("a", "n1", 10, 0.0)
    assert await two.acquire_lease("b", "n2", 10, 0.0)
    assert not await one.acquire_lease("b", "n1", 10, 1.0)


async def test_only_the_holder_releases_a_lease(
    engines: Callable[[], SQLiteEngine], raw_db: Callable[[], sqlite3.Connection]
) -> None:
    one, two = engines(), engines()
    now = time.time()
    assert await one.acquire_lease(LEASE, "n1", 30, now)

    await two.release_lease(LEASE, "n2")
    assert lease_row(raw_db()) == ("n1", now + 30)
    assert not await two.acquire_lease(LEASE, "n2", 30, now)

    await one.release_lease(LEASE, "n1")
    assert lease_row(raw_db()) is None
    assert await two.acquire_lease(LEASE, "n2", 30, now)  # at once, without waiting 30 s
    await one.release_lease(LEASE, "n1")  # no longer its lease: nothing changes
    assert lease_row(raw_db()) == ("n2", now + 30)


async def test_nodes_racing_for_a_free_lease_get_exactly_one_holder(
    engines: Callable[[], SQLiteEngine],
) -> None:
    nodes = [engines() for _ in range(4)]
    for _ in range(5):
        now = time.time()
        for engine in nodes:
            await engine.open()
        results = await asyncio.gather(
            *(e.acquire_lease(LEASE, f"n{i}", 30, now) for i, e in enumerate(nodes))
        )
        assert sum(results) == 1
        winner = results.index(True)
        await nodes[winner].release_lease(LEASE, f"n{winner}")


# -- cron slots -----------------------------------------------------------------------------


def all_jobs(engine: SQLiteEngine) -> list[Job[Any]]:
    return engine.list_jobs(JobFilter(limit=1000))


async def test_a_slot_fires_once_and_only_newer_slots_fire_after_it(
    engines: Callable[[], SQLiteEngine],
) -> None:
    engine = engines()

    fired = await engine.insert_for_slot("nightly", 200.0, spec(1))
    assert fired is not None
    assert await engine.insert_for_slot("nightly", 200.0, spec(2)) is None  # same slot
    assert await engine.insert_for_slot("nightly", 100.0, spec(3)) is None  # older slot
    assert await engine.insert_for_slot("hourly", 100.0, spec(4)) is not None  # other entry
    newer = await engine.insert_for_slot("nightly", 300.0, spec(5))

    assert newer is not None
    assert newer.id != fired.id
    assert sorted(j.args["i"] for j in all_jobs(engine)) == [1, 4, 5]


async def test_the_slot_job_is_inserted_with_the_spec_fields(
    engines: Callable[[], SQLiteEngine],
) -> None:
    engine = engines()
    at = time.time() + 3600
    wanted = spec(
        7,
        meta_json='{"cron": "nightly", "cron_slot": 60.0}',
        tags=("cron", "nightly"),
        priority=3,
        max_attempts=4,
        scheduled_at=at,
    )

    returned = await engine.insert_for_slot("nightly", 60.0, wanted)

    assert returned is not None
    stored = engine.get_job(returned.id)
    assert stored is not None
    for job in (returned, stored):
        assert (job.queue, job.worker, job.args) == ("cron", "tests.cron", {"i": 7})
        assert job.meta == {"cron": "nightly", "cron_slot": 60.0}
        assert tuple(job.tags) == ("cron", "nightly")
        assert (job.priority, job.max_attempts, job.state) == (3, 4, JobState.SCHEDULED)
        assert job.scheduled_at is not None
        assert job.scheduled_at.timestamp() == pytest.approx(at)


async def test_a_failed_insert_does_not_use_up_its_slot(
    engines: Callable[[], SQLiteEngine], raw_db: Callable[[], sqlite3.Connection]
) -> None:
    engine = engines()
    with pytest.raises(DatabaseError, match="CHECK constraint failed"):
        await engine.insert_for_slot("nightly", 60.0, spec(1, priority=12))
    assert raw_db().execute("SELECT COUNT(*) FROM underway_cron").fetchone() == (0,)

    job = await engine.insert_for_slot("nightly", 60.0, spec(2))

    assert job is not None
    assert [j.args["i"] for j in all_jobs(engine)] == [2]


def test_two_nodes_racing_fire_each_slot_once(db_url: str) -> None:
    slots = 20
    barrier = threading.Barrier(2, timeout=10)
    won: dict[str, list[float]] = {"a": [], "b": []}
    failures: list[BaseException] = []

    async def race(name: str) -> None:
        engine = SQLiteEngine(db_url)
        try:
            await engine.open()
            for slot in range(1, slots + 1):
                barrier.wait()
                job = await engine.insert_for_slot("every", float(slot), spec(slot))
                if job is not None:
                    won[name].append(float(slot))
        finally:
            await engine.close()

    def node(name: str) -> None:
        try:
            asyncio.run(race(name))
        except BaseException as exc:
            failures.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=node, args=(name,)) for name in won]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert failures == []
    assert sorted(won["a"] + won["b"]) == [float(s) for s in range(1, slots + 1)]
    check = SQLiteEngine(db_url)
    try:
        assert sorted(j.args["i"] for j in all_jobs(check)) == list(range(1, slots + 1))
    finally:
        check.close_sync()


# -- migration 0002 -------------------------------------------------------------------------


def create_0001_database(path: Path) -> None:
    """A file as the first schema left it: migration 0001 only, and one job."""
    initial = migrations("sqlite")[0]
    assert initial.version == 1
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(
            "CREATE TABLE underway_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
        for statement in split_statements(initial.sql):
            conn.execute(statement)
        conn.execute("INSERT INTO underway_migrations VALUES (1, 'initial', ?)", (time.time(),))
        conn.execute(
            "INSERT INTO underway_jobs (queue, worker, args, inserted_at, scheduled_at) "
            "VALUES ('default', 'old.worker', '{\"old\": true}', 1.0, 1.0)"
        )
    finally:
        conn.close()


async def test_migration_0002_applies_on_a_0001_database_once(
    db_path: Path, engines: Callable[[], SQLiteEngine], raw_db: Callable[[], sqlite3.Connection]
) -> None:
    create_0001_database(db_path)
    engine = engines()

    applied = await asyncio.to_thread(engine.migrate)
    again = await asyncio.to_thread(engine.migrate)
    other = engines()
    from_other = await asyncio.to_thread(other.migrate)

    assert applied == ["0002_signals_leases_cron", "0003_counters"]
    assert (again, from_other) == ([], [])
    conn = raw_db()
    assert conn.execute("SELECT version FROM underway_migrations").fetchall() == [(1,), (2,), (3,)]
    assert [j.args for j in all_jobs(engine)] == [{"old": True}]
    assert await other.signals() == []
    await engine.publish({"action": "pause"})
    assert await other.signals() == [{"action": "pause"}]
    assert await engine.acquire_lease(LEASE, "n1", 10, time.time())
    assert await other.insert_for_slot("nightly", 1.0, spec(1)) is not None


def test_nodes_opening_a_new_file_at_the_same_moment_all_succeed(tmp_path: Path) -> None:
    failures: list[BaseException] = []
    for attempt in range(60):
        url = f"sqlite:///{tmp_path / f'new-{attempt}.db'}"
        barrier = threading.Barrier(4, timeout=10)

        def node(url: str = url, barrier: threading.Barrier = barrier) -> None:
            engine = SQLiteEngine(url)
            try:
                barrier.wait()
                asyncio.run(engine.open())
            except BaseException as exc:
                failures.append(exc)
            finally:
                engine.close_sync()

        threads = [threading.Thread(target=node) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert failures == [], f"attempt {attempt}"
        conn = sqlite3.connect(tmp_path / f"new-{attempt}.db")
        try:
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            assert conn.execute("SELECT COUNT(*) FROM underway_migrations").fetchone() == (3,)
        finally:
            conn.close()
