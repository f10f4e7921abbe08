"""The PostgreSQL engine's pool connections: given back at once, one cursor each.

A connection returned through a pool worker (psycopg_pool's ``reset`` callback) is not
back when the call returns: every statement costs a task switch or a thread wake-up, and
the next sequential call takes another connection meanwhile. A connection given back is
recorded as used just then, so steady use is never checked with an extra round trip, and
one idle longer than the idle check is checked before it is used.

A pool connection runs its statements on one cursor; an application's connection, which
several threads or tasks may share, gets a cursor per statement.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from underway.jobs import JobSpec, JobState
from underway.jobs.engines.postgres import PostgresEngine
from underway.jobs.engines.postgres import _pool as _pg_pool
from underway.jobs.engines.postgres._pool import arows, rows

from ..conftest import wait_until
from ..pg import Schemas, schemas

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
        # a connection the pool may still be opening in the background (it grows when a
        # request waits, as one can while the engine opens) settles first
        await wait_until(lambda: _all_idle(pool), timeout=30, message="the pool to settle")
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
        deadline = time.monotonic() + 30
        while not _all_idle(pool):  # as above: a connection still opening settles first
            assert time.monotonic() < deadline, pool.get_stats()
            time.sleep(0.01)
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


async def test_a_pool_connection_runs_its_statements_on_one_cursor(pg: Schemas) -> None:
    engine = PostgresEngine(pg.url())
    try:
        async with engine._connection() as conn:
            one = await arows(conn, "SELECT 1", None)
            cursor = getattr(conn, "rows_cursor", None)
            two = await arows(conn, "SELECT %b::int, %b::text", (2, "x"))
            none = await arows(conn, "SET application_name = 'uw_cursor'", None)
            three = await arows(conn, "SELECT generate_series(1, 3)", None)
            async with conn.transaction():
                (inserted,) = await engine.insert([spec(7)], conn=conn)
            assert cursor is not None
            assert getattr(conn, "rows_cursor", None) is cursor
    finally:
        await engine.close()

    assert (one, two, none, three) == ([(1,)], [(2, "x")], [], [(1,), (2,), (3,)])
    assert inserted.args == {"i": 7}


def test_threads_sharing_an_application_connection_get_their_own_rows(pg: Schemas) -> None:
    engine = PostgresEngine(pg.url())
    engine.migrate()
    results: dict[int, list[int]] = {}
    with pg.connect() as conn:

        def enqueue(thread: int) -> None:
            got = []
            for n in range(60):
                (job,) = engine.insert_sync([spec(thread * 100 + n)], conn=conn)
                got.append(job.args["i"])
            results[thread] = got

        threads = [threading.Thread(target=enqueue, args=(t,)) for t in range(6)]
        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)  # threads switch between a statement and its fetch
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            sys.setswitchinterval(interval)
        assert not hasattr(conn, "rows_cursor")
    engine.close_sync()

    assert results == {t: [t * 100 + n for n in range(60)] for t in range(6)}


def test_an_application_connection_gets_a_cursor_per_statement(
    pg: Schemas, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[Any] = []
    with pg.connect() as conn:
        real = conn.cursor

        def cursor(*args: Any, **kwargs: Any) -> Any:
            made.append(real(*args, **kwargs))
            return made[-1]

        monkeypatch.setattr(conn, "cursor", cursor)
        assert rows(conn, "SELECT 1", None) == [(1,)]
        assert rows(conn, "SELECT 2", None) == [(2,)]

    assert len(made) == 2
    assert made[0] is not made[1]
