"""A database created by the first schema (one jobs table) upgrades in place to the split one.

The rows an earlier version wrote, in every state and with unique keys, keep their ids and
columns; waiting and running ones land in the live partition, finished ones in the done
partition; every key still held blocks a duplicate; new ids follow every id handed out; a
role that could use the old table can use the new one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from importlib import resources
from typing import Any, cast

import pytest

from underway.jobs.engines.postgres import PostgresEngine
from underway.jobs.job import JobSpec, JobState
from underway.jobs.outcomes import Ack

from ..pg import Schemas, schemas

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg() -> Iterator[Schemas]:
    """Fresh schemas in the test database, dropped after the test."""
    with schemas() as made:
        yield made


ROWS = """
INSERT INTO underway_jobs (id, state, queue, worker, args, attempt, attempted_by,
                           completed_at, unique_key, unique_states)
VALUES (1, 'available', 'q', 'w', '{"i": 1}', 0, NULL, NULL, 'waiting-key', 2),
       (2, 'executing', 'q', 'w', '{"i": 2}', 1, 'old-node', NULL, NULL, 0),
       (3, 'scheduled', 'q', 'w', '{"i": 3}', 0, NULL, NULL, NULL, 0),
       (4, 'completed', 'q', 'w', '{"i": 4}', 1, 'old-node', now(), 'done-key', 16),
       (5, 'discarded', 'q', 'w', '{"i": 5}', 3, 'old-node', NULL, NULL, 0),
       (6, 'retryable', 'q', 'w', '{"i": 6}', 1, 'old-node', NULL, NULL, 0),
       (7, 'cancelled', 'q', 'w', '{"i": 7}', 0, NULL, NULL, NULL, 0);
-- jobs 8 to 50 ran and were pruned: their ids are not handed out again
SELECT setval(pg_get_serial_sequence('underway_jobs', 'id'), 50);
"""


def _first_schema(pg: Schemas, schema: str) -> None:
    """``schema`` as the first version left it: migration 0001 only, with rows in it."""
    sql = (
        resources.files("underway.jobs.engines.postgres")
        .joinpath("migrations", "0001_initial.sql")
        .read_text()
    )
    with pg.connect(autocommit=False) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'SET LOCAL search_path TO "{schema}"')
        conn.execute(sql)
        conn.execute(
            "CREATE TABLE underway_migrations (version integer PRIMARY KEY, "
            "name text NOT NULL, applied_at timestamptz NOT NULL)"
        )
        conn.execute("INSERT INTO underway_migrations VALUES (1, 'initial', now())")
        conn.execute(ROWS)


def _where(pg: Schemas, schema: str) -> dict[int, tuple[str, str]]:
    with pg.connect() as conn:
        rows = cast(
            "list[tuple[int, str, str]]",
            conn.execute(
                f'SELECT id, state, tableoid::regclass::text FROM "{schema}".underway_jobs'
            ).fetchall(),
        )
    return {i: (state, rel.split(".")[-1]) for i, state, rel in rows}


def _spec(key: str | None, i: int) -> JobSpec:
    return JobSpec(worker="w", queue="q", args={"i": i}, args_json=f'{{"i": {i}}}', unique_key=key)


def test_an_old_table_becomes_the_two_partitions(pg: Schemas) -> None:
    schema = pg.name()
    _first_schema(pg, schema)
    engine = PostgresEngine(pg.url(schema))
    try:
        assert engine.migrate() == ["0002_live_and_done", "0003_counters"]
        assert _where(pg, schema) == {
            1: ("available", "underway_jobs_live"),
            2: ("executing", "underway_jobs_live"),
            3: ("scheduled", "underway_jobs_live"),
            4: ("completed", "underway_jobs_done"),
            5: ("discarded", "underway_jobs_done"),
            6: ("retryable", "underway_jobs_live"),
            7: ("cancelled", "underway_jobs_done"),
        }
        running = engine.get_job(2)
        assert running is not None
        assert running.args == {"i": 2}

        # Keys held before the upgrade, by a waiting and by a finished job, still hold.
        again = engine.insert_sync([_spec("waiting-key", 10), _spec("done-key", 11)])
        assert [(j.id, j.conflict) for j in again] == [(1, True), (4, True)]
        # New ids follow every id handed out before, pruned jobs' included, in order.
        fresh = engine.insert_sync([_spec(None, 12), _spec("new-key", 13)])
        assert fresh[0].id > 50
        assert fresh[1].id > fresh[0].id

        # The job an old node was running is rescued like any other, and finishes.
        asyncio.run(_finish_old_work(engine))
        assert _where(pg, schema)[2] == ("completed", "underway_jobs_done")
    finally:
        asyncio.run(engine.close())
        engine.close_sync()


async def _finish_old_work(engine: PostgresEngine) -> None:
    rescued = await engine.rescue(stale_before=10**12, now=10**10)
    assert rescued.get("q", 0) >= 1
    claimed: list[Any] = await engine.fetch("q", 100, "new-node", 10**10)
    ids = {job.id for job in claimed}
    assert {1, 2} <= ids
    job = next(j for j in claimed if j.id == 2)
    await engine.ack([Ack(job.id, JobState.COMPLETED, 10**10, job.attempt)], "new-node")
    done = await asyncio.to_thread(engine.get_job, 2)
    assert done is not None
    assert done.state is JobState.COMPLETED


def test_a_role_granted_the_old_table_enqueues_and_claims_after_the_upgrade(pg: Schemas) -> None:
    schema = pg.name()
    role = f"{schema}_app"
    _first_schema(pg, schema)
    with pg.connect() as admin:
        admin.execute(f'CREATE ROLE "{role}"')
        admin.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"')
        admin.execute(
            f'GRANT SELECT, INSERT, UPDATE, DELETE ON "{schema}".underway_jobs TO "{role}"'
        )
        admin.execute(f'GRANT USAGE ON ALL SEQUENCES IN SCHEMA "{schema}" TO "{role}"')
    engine = PostgresEngine(pg.url(schema))
    try:
        engine.migrate()  # by the owner
        with pg.connect() as app:
            app.execute(f'SET ROLE "{role}"')
            made = engine.insert_sync([_spec("app-key", 20), _spec(None, 21)], conn=app)
            assert [j.conflict for j in made] == [False, False]
            assert engine.insert_sync([_spec("app-key", 22)], conn=app)[0].conflict
            claimed = app.execute(
                f"UPDATE \"{schema}\".underway_jobs SET state = 'completed' "
                "WHERE id = %s RETURNING state",
                (made[0].id,),
            ).fetchall()
            assert claimed == [("completed",)]
    finally:
        engine.close_sync()
        with pg.connect() as admin:
            admin.execute(f'DROP OWNED BY "{role}"')
            admin.execute(f'DROP ROLE "{role}"')
