"""The leader's vacuum of the live partition, on a real PostgreSQL."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import cast

import pytest

from underway.jobs.engines.postgres import PostgresEngine
from underway.jobs.job import JobSpec, JobState
from underway.jobs.outcomes import Ack

from ..conftest import wait_until
from ..pg import Schemas, schemas

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg() -> Iterator[Schemas]:
    """Fresh schemas in the test database, dropped after the test."""
    with schemas() as made:
        yield made


def _last_vacuum(pg: Schemas, schema: str) -> dict[str, bool]:
    with pg.connect() as conn:
        rows = conn.execute(
            "SELECT relname, last_vacuum IS NOT NULL FROM pg_stat_user_tables "
            "WHERE schemaname = %s AND relname LIKE 'underway_jobs_%%'",
            (schema,),
        ).fetchall()
    return dict(cast("list[tuple[str, bool]]", rows))


async def test_vacuum_clears_the_live_partition_once_enough_rows_are_dead(pg: Schemas) -> None:
    engine = PostgresEngine(pg.url())
    try:
        specs = [JobSpec(worker="w", queue="q", args={}, args_json="{}") for _ in range(500)]
        await engine.insert(specs)
        assert await engine.vacuum(1) is None  # nothing claimed or finished: nothing dead
        claimed = await engine.fetch("q", 500, "n", time.time())
        acks = [Ack(j.id, JobState.COMPLETED, time.time(), j.attempt) for j in claimed]
        await engine.ack(acks, "n")
        assert await engine.vacuum(10**9) is None  # below the threshold: left alone

        vacuumed: list[int] = []

        async def vacuums() -> bool:
            # a backend reports its counts within a second, or 10 s once it sits idle
            dead = await engine.vacuum(1)
            if dead is not None:
                vacuumed.append(dead)
            return bool(vacuumed)

        await wait_until(vacuums, timeout=30, interval=0.2, message="a vacuum of the live jobs")
        assert vacuumed[0] >= 1
        assert _last_vacuum(pg, engine.schema) == {
            "underway_jobs_live": True,
            "underway_jobs_done": False,
        }
    finally:
        await engine.close()


async def test_rows_a_long_transaction_keeps_are_not_vacuumed_over_and_over(
    pg: Schemas, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="underway.jobs")
    engine = PostgresEngine(pg.url())
    try:
        await engine.insert([JobSpec(worker="w", queue="q", args={}, args_json="{}")])
        with pg.connect(autocommit=False) as old:
            old.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            old.execute(f'SELECT count(*) FROM "{engine.schema}".underway_jobs')  # a snapshot
            specs = [JobSpec(worker="w", queue="q", args={}, args_json="{}") for _ in range(300)]
            await engine.insert(specs)
            claimed = await engine.fetch("q", 400, "n", time.time())
            await engine.ack(
                [Ack(j.id, JobState.COMPLETED, time.time(), j.attempt) for j in claimed], "n"
            )
            vacuumed: list[int] = []

            async def vacuums() -> bool:
                dead = await engine.vacuum(100)
                if dead is not None:
                    vacuumed.append(dead)
                return bool(vacuumed)

            await wait_until(vacuums, timeout=30, interval=0.2, message="a first vacuum")
            # the snapshot keeps every row dead since it was taken: nothing for a vacuum to do
            assert [await engine.vacuum(100) for _ in range(5)] == [None] * 5
            assert "a transaction open since before they finished keeps them" in caplog.text
            old.rollback()
        assert _vacuum_count(pg, engine.schema) == 1
    finally:
        await engine.close()


def _vacuum_count(pg: Schemas, schema: str) -> int:
    with pg.connect() as conn:
        row = conn.execute(
            "SELECT vacuum_count FROM pg_stat_user_tables "
            "WHERE schemaname = %s AND relname = 'underway_jobs_live'",
            (schema,),
        ).fetchone()
    assert row is not None
    return cast(int, row[0])
