"""Enqueueing inside the application's own transaction on the same database.

The application's connection is the engine's own driver's: a ``sqlite3`` connection to the
same file (Python's default, implicit transactions), or a psycopg connection to the same
PostgreSQL database with the schema on its ``search_path`` (sync, and async below).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest

from underway.errors import ConfigError
from underway.jobs import Job, JobState

from ..conftest import Database, MakeJobs, wait_until

USERS = {
    "sqlite": "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)",
    "postgres": "CREATE TABLE users (id bigserial PRIMARY KEY, name text)",
}
REFUSED = {
    "sqlite": r"conn for a SQLite database must be a sqlite3\.Connection",
    "postgres": r"conn for a PostgreSQL database must be",
}


@pytest.fixture
def app_conn(database: Database) -> Iterator[Any]:
    """The application's connection, in implicit transactions (none open yet)."""
    conn: Any
    if database.postgres:
        conn = psycopg.connect(database.dsn, autocommit=False)
        conn.execute(f'CREATE SCHEMA "{database.schema}"')
        conn.execute(f'SET search_path TO "{database.schema}"')
    else:
        conn = sqlite3.connect(database.path or "", timeout=5.0)
    conn.execute(USERS[database.kind])
    conn.commit()
    yield conn
    conn.close()


def _users(conn: Any) -> list[str]:
    return [name for (name,) in conn.execute("SELECT name FROM users ORDER BY id").fetchall()]


def _in_transaction(conn: Any) -> bool:
    if isinstance(conn, sqlite3.Connection):
        return conn.in_transaction
    return bool(conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS)


async def test_a_rolled_back_transaction_leaves_no_job(make_jobs: MakeJobs, app_conn: Any) -> None:
    jobs = make_jobs()
    ran: list[int] = []

    @jobs.worker
    async def welcome(job: Job[Any]) -> None:
        ran.append(job.args["user"])

    async with jobs:
        app_conn.execute("INSERT INTO users (name) VALUES ('ann')")
        job = welcome.enqueue_sync({"user": 1}, conn=app_conn)
        assert _in_transaction(app_conn)
        app_conn.rollback()
        await asyncio.sleep(0.3)  # six poll intervals in which the node could run it
        stored = await jobs.get_job(job.id)
        counts = jobs.counts_sync()

    assert job.id > 0
    assert stored is None
    assert counts == {}
    assert ran == []
    assert _users(app_conn) == []


async def test_a_committed_job_runs_promptly_woken_by_the_change_signal(
    make_jobs: MakeJobs, app_conn: Any
) -> None:
    jobs = make_jobs(poll_interval=30.0)
    ran_at: list[float] = []

    @jobs.worker
    async def welcome(job: Job[Any]) -> None:
        ran_at.append(time.monotonic())

    async with jobs:
        await asyncio.sleep(0.2)  # the node's first fetch is over; only a wake-up starts jobs
        app_conn.execute("INSERT INTO users (name) VALUES ('bob')")
        job = await welcome.enqueue({"user": 2}, conn=app_conn)
        await asyncio.sleep(0.3)  # uncommitted: invisible to the node
        before_commit = list(ran_at)
        app_conn.commit()
        committed = time.monotonic()
        await wait_until(lambda: ran_at, 15.0, message="the committed job ran")
        stored = await wait_until(lambda: jobs.get_job(job.id), message="job stored")

    assert before_commit == []
    assert ran_at[0] - committed < 10.0  # far below the 30 s poll interval
    assert stored.state in (JobState.EXECUTING, JobState.COMPLETED)
    assert _users(app_conn) == ["bob"]


async def test_enqueue_in_a_long_transaction_does_not_wait_for_the_node(
    make_jobs: MakeJobs, app_conn: Any, database: Database
) -> None:
    jobs = make_jobs(url_options="" if database.postgres else "?busy_timeout=10")
    ran: list[int] = []

    @jobs.worker
    async def welcome(job: Job[Any]) -> None:
        ran.append(job.args["user"])

    async with jobs:
        app_conn.execute("INSERT INTO users (name) VALUES ('cat')")
        await asyncio.sleep(0.2)  # on SQLite the node now waits for the app's write lock
        started = time.monotonic()
        welcome.enqueue_sync({"user": 3}, conn=app_conn)
        elapsed = time.monotonic() - started
        app_conn.commit()
        await wait_until(lambda: ran, 5.0, message="the committed job ran")

    assert elapsed < 5.0  # did not wait for the node's 10 s busy timeout
    assert ran == [3]


async def test_bulk_enqueue_joins_the_transaction_too(make_jobs: MakeJobs, app_conn: Any) -> None:
    jobs = make_jobs(testing="manual")

    @jobs.worker
    async def welcome(job: Job[Any]) -> None: ...

    async with jobs:
        dropped = jobs.enqueue_many_sync([welcome.new({"n": n}) for n in range(3)], conn=app_conn)
        app_conn.rollback()
        kept = await jobs.enqueue_many([welcome.new({"n": n}) for n in range(3)], conn=app_conn)
        app_conn.commit()
        stored = await jobs.list_jobs()

    assert len(dropped) == 3
    assert sorted(j.id for j in stored) == sorted(j.id for j in kept)
    assert sorted(j.args["n"] for j in stored) == [0, 1, 2]


def test_conn_must_be_a_connection_of_the_engines_driver(
    make_jobs: MakeJobs, database: Database
) -> None:
    jobs = make_jobs(testing="manual")

    @jobs.worker
    def welcome(job: Job[Any]) -> None: ...

    with pytest.raises(ConfigError, match=REFUSED[database.kind]):
        welcome.enqueue_sync({}, conn=object())


@pytest.fixture
async def async_app_conn(database: Database) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """The application's async psycopg connection, the schema on its ``search_path``."""
    conn = await psycopg.AsyncConnection.connect(
        database.dsn, options=f"-c search_path={database.schema}"
    )
    yield conn
    await conn.close()


@pytest.mark.postgres_only
async def test_an_async_psycopg_transaction_commits_or_rolls_back_its_jobs(
    make_jobs: MakeJobs, async_app_conn: psycopg.AsyncConnection[Any]
) -> None:
    jobs = make_jobs(poll_interval=5.0)
    ran: list[int] = []

    @jobs.worker
    async def welcome(job: Job[Any]) -> None:
        ran.append(job.args["user"])

    async with jobs:
        await asyncio.sleep(0.2)  # the node's first fetch is over; only a wake-up starts jobs
        gone = await welcome.enqueue({"user": 1}, conn=async_app_conn)
        await async_app_conn.rollback()
        kept = await jobs.enqueue_many(
            [welcome.new({"user": 2}), welcome.new({"user": 3})], conn=async_app_conn
        )
        await asyncio.sleep(0.3)  # uncommitted: invisible to the node
        before_commit = list(ran)
        await async_app_conn.commit()
        committed = time.monotonic()
        await wait_until(lambda: len(ran) == 2, 4.0, message="the committed jobs ran")
        ran_after = time.monotonic() - committed
        stored = await jobs.get_job(gone.id)

    assert before_commit == []
    assert sorted(ran) == [2, 3]
    assert ran_after < 1.0  # far below the 5 s poll interval: woken by the commit
    assert stored is None
    assert sorted(j.args["user"] for j in kept) == [2, 3]
