"""``Jobs.health`` on both engines: the database, its migrations and a node's heartbeat,
reported (never raised), with nothing migrated or created by the check."""

from __future__ import annotations

import asyncio
import json
import math
import socket
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import pytest

from underway.errors import ConfigError
from underway.jobs import Health, Jobs
from underway.jobs.engines._sql import migrations

from ..conftest import Database, MakeJobs, wait_until


def known(database: Database) -> list[str]:
    return [f"{m.version:04d}_{m.name}" for m in migrations(database.kind)]


def create_empty(database: Database) -> None:
    """A database with no underway tables: an empty file, or a schema nobody migrated."""
    if not database.postgres:
        assert database.path is not None
        sqlite3.connect(database.path).close()


def has_tables(database: Database) -> bool:
    if database.postgres:
        return database.exists()
    return bool(database.sql("SELECT name FROM sqlite_master WHERE type = 'table'"))


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound (so nobody else takes it), never
    listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


async def test_a_database_nobody_migrated_is_unhealthy_and_stays_unmigrated(
    make_jobs: MakeJobs, database: Database
) -> None:
    create_empty(database)
    jobs = make_jobs()

    health = await jobs.health()

    assert health.reachable
    assert health.error is None
    assert not health.ok
    assert health.applied == ()
    assert list(health.known) == known(database)
    assert list(health.pending) == known(database)
    assert not health.migrations_current
    (failed,) = health.problems
    assert failed.startswith("migrations: pending: 0001_")
    assert "underway migrate" in failed
    assert not has_tables(database)  # the check migrated nothing


async def test_a_migrated_database_is_healthy(make_jobs: MakeJobs, database: Database) -> None:
    jobs = make_jobs()
    jobs.migrate_sync()

    health = await jobs.health()

    assert health.ok, health.problems
    assert list(health.applied) == known(database)
    assert health.pending == health.newer == ()
    assert [c.name for c in health.checks] == ["database", "migrations"]
    assert health.node is None
    assert health.node_alive is None
    assert (await asyncio.to_thread(jobs.health_sync)).ok  # from a thread: no loop there


async def test_a_database_migrated_by_a_newer_version_is_reported(
    make_jobs: MakeJobs, database: Database
) -> None:
    jobs = make_jobs()
    jobs.migrate_sync()
    at = "now()" if database.postgres else str(time.time())
    database.sql(f"INSERT INTO underway_migrations VALUES (9999, 'from_the_future', {at})")

    health = await jobs.health()

    assert not health.ok
    assert health.newer == ("9999_from_the_future",)
    assert health.pending == ()
    (failed,) = health.problems
    assert "9999_from_the_future" in failed
    assert "newer" in failed


async def test_a_running_node_is_alive_and_a_stopped_one_is_not(
    make_jobs: MakeJobs, database: Database
) -> None:
    jobs = make_jobs(node_name="web-1")
    checker = make_jobs()
    async with jobs:
        health = await checker.health(node="web-1")
        assert health.ok, health.problems
        assert health.node_alive
        assert health.heartbeat_age is not None
        assert 0 <= health.heartbeat_age <= health.window == 30.0
        assert [c.name for c in health.checks] == ["database", "migrations", "node"]
        assert "web-1" in health.checks[2].detail

    stopped = await checker.health(node="web-1")  # a clean stop removes the heartbeat

    assert not stopped.ok
    assert stopped.node_alive is False
    assert stopped.heartbeat_age is None
    assert stopped.problems == (
        "node: node 'web-1' has no heartbeat (not started, stopped, or forgotten as dead)",
    )


async def test_a_heartbeat_older_than_the_rescue_window_is_not_alive(
    make_jobs: MakeJobs, database: Database
) -> None:
    jobs = make_jobs(rescue_after=30.0)
    jobs.migrate_sync()
    now = time.time()
    database.add_node("killed", started_at=now - 600, heartbeat_at=now - 120)  # as kill -9 left
    database.add_node("recent", started_at=now - 600, heartbeat_at=now - 5)

    dead = await jobs.health(node="killed")
    alive = await jobs.health(node="recent")

    assert not dead.ok
    assert dead.node_alive is False
    assert dead.heartbeat_age is not None
    assert dead.heartbeat_age >= 119
    (failed,) = dead.problems
    assert failed.startswith("node: node 'killed' last heartbeated")
    assert "longer than the 30s" in failed
    assert alive.ok, alive.problems
    assert alive.heartbeat_age is not None
    assert 4 <= alive.heartbeat_age < 30


async def test_a_node_asked_about_in_a_database_without_tables_has_no_heartbeat(
    make_jobs: MakeJobs, database: Database
) -> None:
    create_empty(database)
    health = await make_jobs().health(node="web-1")

    assert health.reachable
    assert [c.name for c in health.checks if not c.ok] == ["migrations", "node"]
    assert health.heartbeat_age is None


@pytest.mark.sqlite_only
async def test_a_missing_sqlite_file_is_reported_and_not_created(
    make_jobs: MakeJobs, database: Database
) -> None:
    assert database.path is not None
    health = await make_jobs().health(node="web-1")

    assert not health.reachable
    assert not health.ok
    assert health.error is not None
    assert "no SQLite database at" in health.error
    assert health.pending == ()  # unknown, not "all of them"
    assert [c.ok for c in health.checks] == [False, False, False]
    assert health.checks[1].detail == "unknown: the database cannot be reached"
    assert not database.path.exists()


@pytest.mark.sqlite_only
async def test_a_file_that_is_not_a_database_is_reported(
    make_jobs: MakeJobs, database: Database
) -> None:
    assert database.path is not None
    database.path.write_bytes(b"this is not a SQLite database, just some text " * 100)

    health = await make_jobs().health()

    assert not health.reachable
    assert health.error is not None
    assert "not a database" in health.error


@pytest.mark.sqlite_only
async def test_an_in_memory_database_is_checked_on_its_own_connection() -> None:
    jobs = Jobs("sqlite:///:memory:", testing="manual")
    closed = await jobs.health()
    assert not closed.reachable
    assert closed.error is not None
    assert "in-memory" in closed.error
    async with jobs:  # manual testing: the engine opens (and migrates), no node runs
        opened = await jobs.health()
    assert opened.ok, opened.problems


async def test_an_unreachable_postgres_is_reported_without_raising(closed_port: int) -> None:
    jobs = Jobs(f"postgresql://postgres:secret@127.0.0.1:{closed_port}/nothing")

    health = await jobs.health(node="web-1", timeout=30)

    assert not health.ok
    assert not health.reachable
    assert health.error is not None
    assert "refused" in health.error.lower()
    assert "\n" not in health.error
    assert "secret" not in health.error
    assert "secret" not in health.database
    assert [c.ok for c in health.checks] == [False, False, False]
    assert health.to_dict()["database"]["reachable"] is False


async def test_a_server_that_never_answers_is_given_up_after_the_timeout(
    silent_port: int,
) -> None:
    jobs = Jobs(f"postgresql://postgres@127.0.0.1:{silent_port}/nothing")

    health = await jobs.health(timeout=0.3)

    assert not health.reachable
    assert health.error == "no answer within 0.3s"


def test_health_sync_refuses_a_running_event_loop_and_bad_arguments() -> None:
    jobs = Jobs("sqlite:///:memory:")

    async def on_the_loop() -> None:
        with pytest.raises(RuntimeError, match=r"use await jobs\.health\(\)"):
            jobs.health_sync()

    asyncio.run(on_the_loop())
    bad: list[tuple[dict[str, Any], str]] = [
        ({"node": ""}, "node must be a node's name"),
        ({"node": 7}, "node must be a node's name"),
        ({"timeout": 0}, "timeout must be seconds > 0"),
        ({"timeout": -1.0}, "timeout must be seconds > 0"),
        ({"timeout": math.nan}, "timeout must be seconds > 0"),
        ({"timeout": True}, "timeout must be seconds > 0"),
        ({"timeout": "5"}, "timeout must be seconds > 0"),
    ]
    for kwargs, message in bad:
        with pytest.raises(ConfigError, match=message):
            jobs.health_sync(**kwargs)
        with pytest.raises(ConfigError, match=message):
            asyncio.run(jobs.health(**kwargs))


async def test_the_report_is_json_ready(make_jobs: MakeJobs, database: Database) -> None:
    jobs = make_jobs(node_name="web-1")
    async with jobs:
        await wait_until(lambda: "web-1" in database.nodes(), 10, message="a heartbeat row")
        health: Health = await jobs.health(node="web-1")

    report = json.loads(json.dumps(health.to_dict()))

    assert report["ok"] is True
    assert report["database"] == {"name": health.database, "reachable": True, "error": None}
    assert report["migrations"]["current"] is True
    assert report["migrations"]["pending"] == report["migrations"]["newer"] == []
    assert report["node"]["name"] == "web-1"
    assert report["node"]["alive"] is True
    assert report["node"]["window"] == 30.0
    assert [c["name"] for c in report["checks"]] == ["database", "migrations", "node"]
