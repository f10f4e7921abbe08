"""Enqueueing inside the application's own sqlite3 transaction on the same file."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from underway.errors import ConfigError
from underway.jobs import Job, JobState

from .conftest import MakeJobs, wait_until


@pytest.fixture
def app_conn(db_path: Path) -> Iterator[sqlite3.Connection]:
    """The application's connection, with Python's default (implicit) transactions."""
    conn = sqlite3.connect(db_path, timeout=5.0)
    conn.execute("CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.commit()
    yield conn
    conn.close()


def _users(conn: sqlite3.Connection) -> list[str]:
    return [name for (name,) in conn.execute("SELECT name FROM users ORDER BY id")]


async def test_a_rolled_back_transaction_leaves_no_job(
    make_jobs: MakeJobs, app_conn: sqlite3.Connection
) -> None:
    jobs = make_jobs()
    ran: list[int] = []

    @jobs.worker
    async def welcome(job: Job[Any]) -> None:
        ran.append(job.args["user"])

    async with jobs:
        app_conn.execute("INSERT INTO users (name) VALUES ('ann')")
        job = welcome.enqueue_sync({"user": 1}, conn=app_conn)
        assert app_conn.in_transaction
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
    make_jobs: MakeJobs, app_conn: sqlite3.Connection
) -> None:
    jobs = make_jobs(poll_interval=5.0)
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
        await wait_until(lambda: ran_at, 4.0, message="the committed job ran")
        stored = await wait_until(lambda: jobs.get_job(job.id), message="job stored")

    assert before_commit == []
    assert ran_at[0] - committed < 1.0  # far below the 5 s poll interval
    assert stored.state in (JobState.EXECUTING, JobState.COMPLETED)
    assert _users(app_conn) == ["bob"]


async def test_enqueue_in_a_long_transaction_does_not_wait_for_the_node(
    make_jobs: MakeJobs, app_conn: sqlite3.Connection
) -> None:
    jobs = make_jobs(url_options="?busy_timeout=3")
    ran: list[int] = []

    @jobs.worker
    async def welcome(job: Job[Any]) -> None:
        ran.append(job.args["user"])

    async with jobs:
        app_conn.execute("INSERT INTO users (name) VALUES ('cat')")
        await asyncio.sleep(0.2)  # the node now waits for the write lock the app holds
        started = time.monotonic()
        welcome.enqueue_sync({"user": 3}, conn=app_conn)
        elapsed = time.monotonic() - started
        app_conn.commit()
        await wait_until(lambda: ran, 5.0, message="the committed job ran")

    assert elapsed < 0.5
    assert ran == [3]


async def test_bulk_enqueue_joins_the_transaction_too(
    make_jobs: MakeJobs, app_conn: sqlite3.Connection
) -> None:
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


def test_conn_must_be_a_sqlite3_connection(make_jobs: MakeJobs) -> None:
    jobs = make_jobs(testing="manual")

    @jobs.worker
    def welcome(job: Job[Any]) -> None: ...

    with pytest.raises(ConfigError, match=r"must be a sqlite3\.Connection"):
        welcome.enqueue_sync({}, conn=object())
