"""Shared fixtures for the in-process integration tests of ``underway.jobs`` on SQLite.

``make_jobs`` builds a :class:`Jobs` app on a file in ``tmp_path`` with short intervals, so
a running node reacts within tens of milliseconds; every app it made is closed at teardown.
``wait_until`` awaits a condition with a deadline instead of sleeping.
"""

from __future__ import annotations

import asyncio
import inspect
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from underway.jobs import Job, Jobs, JobState
from underway.jobs.engines.sqlite import SQLiteEngine
from underway.jobs.job import FINISHED_STATES

FAST: dict[str, Any] = {
    "poll_interval": 0.05,
    "stage_interval": 0.05,
    "heartbeat_interval": 0.5,
    "rescue_after": 30.0,
    "shutdown_grace": 2.0,
}


class MakeJobs(Protocol):
    """Builds a Jobs app on the test's database file."""

    def __call__(self, *, url_options: str = "", **options: Any) -> Jobs: ...


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """The SQLite file the test's apps share."""
    return tmp_path / "jobs.db"


@pytest.fixture
def db_url(db_path: Path) -> str:
    """The database URL of :func:`db_path`."""
    return f"sqlite:///{db_path}"


@pytest.fixture
def make_jobs(db_url: str) -> Iterator[MakeJobs]:
    """A factory of Jobs apps on the test's file, with short intervals (overridable)."""
    made: list[Jobs] = []

    def make(*, url_options: str = "", **options: Any) -> Jobs:
        app = Jobs(db_url + url_options, **{"queues": {"default": 10}, **FAST, **options})
        made.append(app)
        return app

    yield make
    for app in made:
        engine = app.engine
        if isinstance(engine, SQLiteEngine):
            engine.close_sync()


@pytest.fixture
def raw_db(db_path: Path) -> Iterator[Callable[[], sqlite3.Connection]]:
    """Opens plain sqlite3 connections to the test's file (autocommit), closed at teardown."""
    conns: list[sqlite3.Connection] = []

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        conns.append(conn)
        return conn

    yield connect
    for conn in conns:
        conn.close()


async def wait_until(
    predicate: Callable[[], Any | Awaitable[Any]],
    timeout: float = 5.0,
    *,
    interval: float = 0.01,
    message: str = "condition",
) -> Any:
    """Await until ``predicate()`` (sync or async) is truthy; return its value.

    Raises:
        AssertionError: The condition did not hold within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{message} did not hold within {timeout}s (last: {value!r})")
        await asyncio.sleep(interval)


async def wait_for_state(
    jobs: Jobs, job_id: int, *states: JobState, timeout: float = 5.0
) -> Job[Any]:
    """Await until job ``job_id`` is in one of ``states`` (default: finished); return it."""
    states = states or tuple(FINISHED_STATES)

    async def reached() -> Job[Any] | None:
        job = await jobs.get_job(job_id)
        return job if job is not None and job.state in states else None

    result: Job[Any] = await wait_until(
        reached, timeout, interval=0.02, message=f"job {job_id} in {[s.value for s in states]}"
    )
    return result
