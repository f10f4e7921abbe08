"""The PostgreSQL engine's pools give a connection back at once, marked as just used.

A connection returned through a pool worker (psycopg_pool's ``reset`` callback) is not
back when the call returns: every statement costs a task switch or a thread wake-up, and
the next sequential call takes another connection meanwhile. A
connection given back is recorded as used just then, so steady use is never checked with
an extra round trip, and one idle longer than the idle check is checked before it is used.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from underway.jobs import JobSpec, JobState
from underway.jobs.engines import _pg_pool
from underway.jobs.engines.postgres import PostgresEngine

from .pg import Schemas, schemas

pytestmark = pytest.mark.postgres


def spec(i: int) -> JobSpec:
    return JobSpec(
        worker="tests.pool", queue="default", args={"i": i}, args_json=json.dumps({"i": i})
    )


@pytest.fixture
def pg() -> Iterator[Schemas]:
    with schemas() as made:
        yield made


class Checks:
    """Counts the pools' connection checks (one round trip each)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real_async = AsyncConnectionPool.check_connection
        real_sync = ConnectionPool.check_connection

        async def acheck(conn: Any) -> None:
            self.count += 1
            await real_async(conn)

        def check(conn: Any) -> None:
            self.count += 1
            real_sync(conn)

        monkeypatch.setattr(AsyncConnectionPool, "check_connection", staticmethod(acheck))
        monkeypatch.setattr(ConnectionPool, "check_connection", staticmethod(check))


def _all_idle(pool: AsyncConnectionPool[Any] | ConnectionPool[Any]) -> bool:
    stats = pool.get_stats()
    return bool(stats["pool_available"] == stats["pool_size"])


def _age_every_connection(engine: PostgresEngine, seconds: float) -> int:
    """Make every pooled connection look unused for ``seconds`` more; how many there are."""
    used = engine._pools._fresh._used
    for conn in list(used):
        used[conn] -= seconds
    return len(used)


async def test_sequential_inserts_reuse_one_connection_unchecked(
    pg: Schemas, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = PostgresEngine(pg.url())
    try:
        await engine.open()
        await engine.insert([spec(0)])
        pool = engine._pools._apool
        assert pool is not None
        checks = Checks(monkeypatch)
        for i in range(1, 30):
            await engine.insert([spec(i)])
            assert _all_idle(pool)  # given back already, not by a pool worker later
        assert checks.count == 0

        idle = _age_every_connection(engine, _pg_pool._IDLE_CHECK + 1)
        for i in range(30, 30 + 3 * idle):
            await engine.insert([spec(i)])
        assert checks.count == idle  # each idle connection once; then it counts as just used
        stored = await engine.available_sample(["default"], 1000)
        assert stored == {("default", "tests.pool"): 30 + 3 * idle}
    finally:
        await engine.close()


def test_sequential_sync_inserts_reuse_one_connection_unchecked(
    pg: Schemas, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = PostgresEngine(pg.url())
    try:
        engine.insert_sync([spec(0)])
        pool = engine._pools._spool
        assert pool is not None
        checks = Checks(monkeypatch)
        for i in range(1, 30):
            engine.insert_sync([spec(i)])
            assert _all_idle(pool)
        assert checks.count == 0

        idle = _age_every_connection(engine, _pg_pool._IDLE_CHECK + 1)
        for i in range(30, 30 + 3 * idle):
            engine.insert_sync([spec(i)])
        assert checks.count == idle
        assert engine.counts() == {("default", JobState.AVAILABLE): 30 + 3 * idle}
    finally:
        engine.close_sync()
