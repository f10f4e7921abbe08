"""The leader's vacuum of the live partition, on a real PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from underway.jobs.engines.postgres import PostgresEngine
from underway.jobs.job import JobSpec, JobState
from underway.jobs.outcomes import Ack

from .conftest import wait_until
from .pg import Schemas, schemas

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
    return dict(rows)


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
