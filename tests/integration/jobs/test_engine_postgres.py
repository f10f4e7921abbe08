"""The PostgreSQL engine on a real server: claims, bulk and unique inserts, notifications,
transactional enqueue, signals, leases, cron slots, schemas and a running node."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from underway.errors import ConfigError, DatabaseError
from underway.jobs import Job, Jobs, JobSpec, JobState
from underway.jobs.engines import open_engine
from underway.jobs.engines.base import JobFilter
from underway.jobs.engines.postgres import PostgresEngine
from underway.jobs.engines.postgres._ack import ack_params, ack_statement
from underway.jobs.engines.postgres._insert import (
    build_insert,
    insert_steps,
    numbered,
    run_steps,
    statements,
)
from underway.jobs.outcomes import Ack

from ..conftest import FAST, wait_until
from ..pg import Schemas, schemas

pytestmark = pytest.mark.postgres

QUEUE = "default"
UNIQUE_LIVE = 0b1111  # scheduled, available, executing, retryable

MakeEngine = Callable[..., PostgresEngine]


def spec(
    i: int,
    *,
    queue: str = QUEUE,
    priority: int = 0,
    scheduled_at: float | None = None,
    max_attempts: int = 20,
    unique_key: str | None = None,
    unique_period: float | None = None,
) -> JobSpec:
    """A job of a worker no node runs, with ``{"i": i}`` as args."""
    return JobSpec(
        worker="tests.pg",
        queue=queue,
        args={"i": i},
        args_json=json.dumps({"i": i}),
        priority=priority,
        scheduled_at=scheduled_at,
        max_attempts=max_attempts,
        unique_key=unique_key,
        unique_states=UNIQUE_LIVE if unique_key else 0,
        unique_period=unique_period,
    )


@pytest.fixture
def pg() -> Iterator[Schemas]:
    """Fresh schemas in the test database, dropped after the test."""
    with schemas() as made:
        yield made


@pytest.fixture
def url(pg: Schemas) -> str:
    """The URL of the test's own schema."""
    return pg.url()


@pytest.fixture
async def engines(url: str) -> AsyncIterator[MakeEngine]:
    """Makes engines (on the test's schema by default), closed at teardown."""
    made: list[PostgresEngine] = []

    def make(engine_url: str | None = None) -> PostgresEngine:
        engine = PostgresEngine(engine_url or url)
        made.append(engine)
        return engine

    yield make
    for engine in made:
        await engine.close()


async def opened(make: MakeEngine, engine_url: str | None = None) -> PostgresEngine:
    engine = make(engine_url)
    await engine.open()
    return engine


def raw(pg: Schemas, sql: str, params: Any = None, *, schema: str | None = None) -> list[Any]:
    """Run ``sql`` on a plain connection with ``search_path`` at the test's schema."""
    with pg.connect() as conn:
        conn.execute(f'SET search_path TO "{schema or pg.made[0]}"')
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


# -- claims ---------------------------------------------------------------------------------


async def test_fetch_claims_jobs_in_start_order(engines: MakeEngine) -> None:
    engine = await opened(engines)
    now = time.time()
    plan = [(3, now - 5), (0, now - 1), (0, now - 9), (3, now - 5), (1, now - 2), (0, now - 1)]
    inserted = await engine.insert(
        [spec(i, priority=p, scheduled_at=at) for i, (p, at) in enumerate(plan)]
    )

    claimed = await engine.fetch(QUEUE, 100, "node-a", now)

    expected = sorted(range(len(plan)), key=lambda i: (plan[i][0], plan[i][1], inserted[i].id))
    assert [j.args["i"] for j in claimed] == expected == [2, 1, 5, 4, 0, 3]
    assert all(j.state is JobState.EXECUTING for j in claimed)
    assert all(j.attempt == 1 and j.attempted_by == "node-a" for j in claimed)
    assert all(j.attempted_at is not None for j in claimed)
    assert await engine.fetch(QUEUE, 100, "node-a", now) == []


async def test_fetch_takes_only_due_available_jobs_of_its_queue(engines: MakeEngine) -> None:
    engine = await opened(engines)
    now = time.time()
    await engine.insert([spec(1, scheduled_at=now + 60), spec(2, queue="other"), spec(3)])

    claimed = await engine.fetch(QUEUE, 10, "node-a", now)

    assert [j.args for j in claimed] == [{"i": 3}]
    assert engine.counts() == {
        (QUEUE, JobState.SCHEDULED): 1,
        (QUEUE, JobState.EXECUTING): 1,
        ("other", JobState.AVAILABLE): 1,
    }


async def test_two_engines_fetching_concurrently_never_claim_a_job_twice(
    engines: MakeEngine,
) -> None:
    first, second = await opened(engines), await opened(engines)
    total = 3000
    inserted = await first.insert([spec(i) for i in range(total)])

    async def claim(engine: PostgresEngine, node: str, batch: int) -> list[Job[Any]]:
        got: list[Job[Any]] = []
        while jobs := await engine.fetch(QUEUE, batch, node, time.time()):
            got.extend(jobs)
        return got

    loops = [
        claim(first, "a", 7),
        claim(second, "b", 5),
        claim(first, "c", 3),
        claim(second, "d", 11),
    ]
    results = await asyncio.gather(*loops)

    ids = [j.id for group in results for j in group]
    assert len(ids) == len(set(ids)) == total
    assert set(ids) == {j.id for j in inserted}
    assert all(len(group) > 0 for group in results)
    for group, node in zip(results, "abcd", strict=True):
        assert all(j.attempted_by == node and j.attempt == 1 for j in group)
        assert [j.id for j in group] == sorted(j.id for j in group)


# -- inserts --------------------------------------------------------------------------------


async def test_bulk_insert_of_5000_jobs_returns_ids_in_order(
    engines: MakeEngine, pg: Schemas
) -> None:
    engine = await opened(engines)
    count = 5000
    now = time.time()
    specs = [spec(i, scheduled_at=now + 60 if i % 10 == 0 else None) for i in range(count)]

    inserted = await engine.insert(specs)

    assert [j.args["i"] for j in inserted] == list(range(count))
    ids = [j.id for j in inserted]
    assert ids == sorted(ids)
    assert len(set(ids)) == count
    assert [j.state for j in inserted[:2]] == [JobState.SCHEDULED, JobState.AVAILABLE]
    rows = raw(pg, "SELECT id, (args->>'i')::int, state FROM underway_jobs")
    assert {r[0]: r[1] for r in rows} == {j.id: j.args["i"] for j in inserted}
    assert {r[0]: r[2] for r in rows} == {j.id: j.state.value for j in inserted}


async def test_insert_keeps_every_field(engines: MakeEngine) -> None:
    engine = await opened(engines)
    at = time.time() + 30
    job_spec = JobSpec(
        worker="tests.pg",
        queue="mail",
        args={"to": "ann", "n": [1, 2]},
        args_json='{"to": "ann", "n": [1, 2]}',
        meta_json='{"trace": "x"}',
        tags=("a", "b"),
        priority=4,
        max_attempts=3,
        scheduled_at=at,
    )

    (job,) = await engine.insert([job_spec])
    stored = engine.get_job(job.id)

    assert stored is not None
    assert (stored.queue, stored.worker, stored.args) == ("mail", "tests.pg", job_spec.args)
    assert (stored.meta, stored.tags, stored.priority, stored.max_attempts) == (
        {"trace": "x"},
        ("a", "b"),
        4,
        3,
    )
    assert stored.state is JobState.SCHEDULED
    assert stored.scheduled_at is not None
    assert abs(stored.scheduled_at.timestamp() - at) < 1e-3
    assert stored.scheduled_at == job.scheduled_at
    assert engine.get_job(job.id + 1000) is None


async def test_stored_times_are_those_returned_to_the_microsecond(engines: MakeEngine) -> None:
    engine = await opened(engines)
    base = time.time()
    specs = [spec(i, scheduled_at=base + 60 + i / 7777.0 + 1e-7 * (i % 10)) for i in range(300)]

    inserted = await engine.insert(specs)
    stored = {j.id: j for j in engine.list_jobs(JobFilter(limit=1000))}

    assert len(stored) == len(inserted)
    for job in inserted:
        assert (stored[job.id].scheduled_at, stored[job.id].inserted_at) == (
            job.scheduled_at,
            job.inserted_at,
        )


async def test_unique_duplicates_in_a_batch_and_across_batches(engines: MakeEngine) -> None:
    engine = await opened(engines)

    first = await engine.insert([spec(1, unique_key="k"), spec(2), spec(3, unique_key="k")])
    again = await engine.insert([spec(4, unique_key="k"), spec(5, unique_key="other")])

    assert [j.conflict for j in first] == [False, False, True]
    assert first[2].id == first[0].id
    assert again[0].conflict is True
    assert again[0].id == first[0].id
    assert again[0].args == {"i": 1}
    assert again[1].conflict is False
    assert sum(engine.counts().values()) == 3


async def test_a_unique_key_is_freed_when_the_job_leaves_its_states(engines: MakeEngine) -> None:
    engine = await opened(engines)
    (job,) = await engine.insert([spec(1, unique_key="k")])
    (claimed,) = await engine.fetch(QUEUE, 1, "n", time.time())
    (still,) = await engine.insert([spec(2, unique_key="k")])

    await engine.ack([Ack(job.id, JobState.COMPLETED, time.time(), 1)], "n")
    (after,) = await engine.insert([spec(3, unique_key="k")])

    assert still.conflict is True
    assert still.id == claimed.id == job.id
    assert after.conflict is False
    assert after.id != job.id


async def test_a_unique_key_is_freed_when_its_period_is_over(engines: MakeEngine) -> None:
    engine = await opened(engines)
    (job,) = await engine.insert([spec(1, unique_key="p", unique_period=0.05)])

    async def inserted_anew() -> Job[Any] | None:
        (again,) = await engine.insert([spec(2, unique_key="p", unique_period=60)])
        return None if again.conflict else again

    fresh = await wait_until(inserted_anew, 3.0, interval=0.02)

    assert fresh.id != job.id
    (blocked,) = await engine.insert([spec(3, unique_key="p", unique_period=60)])
    assert blocked.conflict is True
    assert blocked.id == fresh.id


def test_insert_steps_insert_again_when_a_duplicates_key_was_freed_meanwhile() -> None:
    """Driven by hand: the key conflicted, then its holder finished before the look-up."""
    specs = [spec(1), spec(2, unique_key="k")]
    steps = insert_steps(specs, 1000.0)
    sent: list[str] = []
    names = {statements()[name]: name for name in ("insert", "unique_expire", "unique_existing")}

    def execute(sql: str, params: Any) -> list[tuple[Any, ...]]:
        sent.append(names[sql])
        if names[sql] == "insert":
            rows = max(len(p) for p in params if isinstance(p, list))
            return [(10, None)] if rows == 2 else [(11, "k")]
        return []  # expire: nothing; look-up: the holder is gone

    jobs = run_steps(steps, execute)

    assert sent == ["unique_expire", "insert", "unique_existing", "insert"]
    assert [(j.id, j.conflict, j.args) for j in jobs] == [
        (10, False, {"i": 1}),
        (11, False, {"i": 2}),
    ]
    sql, params = build_insert(specs, 1000.0)
    assert numbered(sql).count("$") == len(params) == 24


def test_twenty_connections_inserting_the_same_unique_job_make_one_row(pg: Schemas) -> None:
    engine = PostgresEngine(pg.url())
    engine.migrate()
    barrier = threading.Barrier(20)

    def insert(i: int) -> list[Job[Any]]:
        with pg.connect() as conn:
            barrier.wait(timeout=10)
            return engine.insert_sync([spec(100 + i), spec(i, unique_key="same")], conn=conn)

    try:
        with ThreadPoolExecutor(20) as pool:
            results = list(pool.map(insert, range(20)))
        counts = engine.counts()
    finally:
        asyncio.run(engine.close())

    unique = [r[1] for r in results]
    assert sum(not j.conflict for j in unique) == 1
    assert len({j.id for j in unique}) == 1
    assert counts == {(QUEUE, JobState.AVAILABLE): 21}
    assert sorted(r[0].args["i"] for r in results) == list(range(100, 120))


# -- acks, rescue, release, stage, prune ----------------------------------------------------


async def test_acks_of_every_kind_in_one_batch(engines: MakeEngine) -> None:
    engine = await opened(engines)
    done, retry, snooze, cancel = await engine.insert([spec(i) for i in range(4)])
    await engine.fetch(QUEUE, 4, "n", time.time())
    now = time.time()

    await engine.ack(
        [
            Ack(done.id, JobState.COMPLETED, now, 1, result='{"ok": true}'),
            Ack(
                retry.id,
                JobState.RETRYABLE,
                now,
                1,
                scheduled_at=now + 60,
                error="boom",
                traceback="tb",
            ),
            Ack(snooze.id, JobState.SCHEDULED, now, 1, scheduled_at=now + 5, snoozed=True),
            Ack(cancel.id, JobState.CANCELLED, now, 1, error="cancelled: no"),
        ],
        "n",
    )
    jobs = {j.id: j for j in engine.list_jobs(JobFilter())}

    assert jobs[done.id].state is JobState.COMPLETED
    assert jobs[done.id].result == {"ok": True}
    assert jobs[done.id].completed_at is not None
    assert jobs[retry.id].state is JobState.RETRYABLE
    assert [(e.attempt, e.error, e.traceback) for e in jobs[retry.id].errors] == [(1, "boom", "tb")]
    assert jobs[snooze.id].state is JobState.SCHEDULED
    assert (jobs[snooze.id].attempt, jobs[snooze.id].meta) == (0, {"snoozed": 1})
    assert jobs[cancel.id].state is JobState.CANCELLED
    assert jobs[cancel.id].cancelled_at is not None


async def test_a_large_ack_batch_is_planned_without_a_nested_loop(engines: MakeEngine) -> None:
    """A generic plan (a statement prepared after a few runs) guesses 10 rows for ``unnest``
    and one executing job: a nested loop would rescan the arrays for every job."""
    engine = await opened(engines)
    await engine.insert([spec(i) for i in range(20_000)])
    claimed = [j for _ in range(10) for j in await engine.fetch(QUEUE, 100, "n", time.time())]
    acks = [Ack(j.id, JobState.COMPLETED, time.time(), 1) for j in claimed]
    kinds, params = ack_params(acks, "n")
    names: list[str] = []

    def positional(match: re.Match[str]) -> str:
        if match[1] not in names:
            names.append(match[1])
        return f"${names.index(match[1]) + 1}"

    prepared = re.sub(r"%\((\w+)\)[sb]", positional, ack_statement(engine._sql.schema_sql, kinds))
    async with engine._pools.connection() as conn:
        await conn.execute(f"PREPARE ack_probe AS {prepared}")
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        cur = psycopg.AsyncClientCursor(conn)
        marks = ", ".join(["%s"] * len(names))
        await cur.execute(f"EXPLAIN EXECUTE ack_probe({marks})", [params[n] for n in names])
        plan = "\n".join(r[0] for r in await cur.fetchall())
        await conn.execute("DEALLOCATE ack_probe")
        await conn.execute("RESET plan_cache_mode")
    await engine.ack(acks, "n")

    assert "Nested Loop" not in plan
    assert "Hash Join" in plan
    assert engine.counts() == {
        (QUEUE, JobState.COMPLETED): 1000,
        (QUEUE, JobState.AVAILABLE): 19_000,
    }


async def _claimed_twice(a: PostgresEngine, b: PostgresEngine) -> Job[Any]:
    """One job claimed by node-a, rescued (no heartbeats), claimed again by node-b."""
    (job,) = await a.insert([spec(1)])
    (claim,) = await a.fetch(QUEUE, 1, "node-a", time.time())
    assert (claim.attempt, claim.attempted_by) == (1, "node-a")
    now = time.time()
    assert await b.rescue(stale_before=now, now=now) == {QUEUE: 1}
    (again,) = await b.fetch(QUEUE, 1, "node-b", time.time())
    assert (again.id, again.attempt, again.attempted_by) == (job.id, 2, "node-b")
    return again


async def test_a_late_ack_and_release_from_a_rescued_node_change_nothing(
    engines: MakeEngine,
) -> None:
    a, b = await opened(engines), await opened(engines)
    job = await _claimed_twice(a, b)
    now = time.time()

    await a.ack([Ack(job.id, JobState.COMPLETED, now, 1, result='"late"')], "node-a")
    await a.ack([Ack(job.id, JobState.RETRYABLE, now, 1, scheduled_at=now, error="x")], "node-a")
    released = await a.release([(job.id, 1)], "node-a", now)
    await b.ack([Ack(job.id, JobState.COMPLETED, now, 1, result='"old"')], "node-b")
    after_late = a.get_job(job.id)
    await b.ack([Ack(job.id, JobState.COMPLETED, now, 2, result='"b"')], "node-b")
    after_b = a.get_job(job.id)

    assert released == 0
    assert after_late is not None
    assert (after_late.state, after_late.attempt, after_late.attempted_by) == (
        JobState.EXECUTING,
        2,
        "node-b",
    )
    assert after_late.result is None
    assert [e.error for e in after_late.errors] == ["rescued: node node-a stopped heartbeating"]
    assert after_b is not None
    assert (after_b.state, after_b.result) == (JobState.COMPLETED, "b")


async def test_rescue_returns_only_the_jobs_of_silent_nodes(
    engines: MakeEngine, pg: Schemas
) -> None:
    engine = await opened(engines)
    now = time.time()
    await engine.insert([spec(1), spec(2), spec(3, max_attempts=1)])
    await engine.heartbeat("dead", now, {})
    await engine.heartbeat("alive", now, {"queues": {QUEUE: 1}})
    # Liveness is judged on the server's clock: age the dead node's heartbeat there.
    raw(
        pg,
        "UPDATE underway_nodes SET heartbeat_at = now() - interval '100 seconds' "
        "WHERE name = 'dead'",
    )
    (mine,) = await engine.fetch(QUEUE, 1, "alive", now)
    theirs = await engine.fetch(QUEUE, 2, "dead", now)

    rescued = await engine.rescue(stale_before=now - 10, now=now)

    assert rescued == {QUEUE: 1}  # the other one is out of attempts: discarded
    states = {j.id: j.state for j in engine.list_jobs(JobFilter())}
    assert states[mine.id] is JobState.EXECUTING
    assert sorted(states[j.id] for j in theirs) == [JobState.AVAILABLE, JobState.DISCARDED]
    await engine.forget_node("alive")
    assert await engine.rescue(stale_before=now - 10, now=now) == {QUEUE: 1}


async def test_liveness_uses_the_servers_clock_not_the_nodes(
    engines: MakeEngine,
) -> None:
    engine = await opened(engines)
    now = time.time()
    await engine.insert([spec(1)])
    # A node whose clock runs 90 s behind heartbeats and claims a job: still alive.
    await engine.heartbeat("slow-clock", now - 90, {})
    (job,) = await engine.fetch(QUEUE, 1, "slow-clock", now - 90)
    assert await engine.rescue(stale_before=now - 60, now=now) == {}
    assert engine.get_job(job.id).state is JobState.EXECUTING  # type: ignore[union-attr]


async def test_release_hands_back_only_this_nodes_jobs(engines: MakeEngine) -> None:
    engine = await opened(engines)
    await engine.insert([spec(1), spec(2), spec(3)])
    mine = await engine.fetch(QUEUE, 2, "me", time.time())
    (other,) = await engine.fetch(QUEUE, 1, "you", time.time())

    claims = [(j.id, j.attempt) for j in [*mine, other]]
    released = await engine.release(claims, "me", time.time())

    assert released == 2
    back = await engine.fetch(QUEUE, 5, "me", time.time())
    assert sorted(j.id for j in back) == sorted(j.id for j in mine)
    assert all(j.attempt == 1 for j in back)  # the released attempt was not counted


async def test_stage_makes_due_jobs_available_per_queue(engines: MakeEngine) -> None:
    engine = await opened(engines)
    now = time.time()
    await engine.insert(
        [
            spec(1, scheduled_at=now + 5),
            spec(2, queue="q2", scheduled_at=now + 5),
            spec(3, scheduled_at=now + 50),
        ]
    )

    assert (await engine.stage(now)).count == 0
    only_q2 = await engine.stage(now + 10, queue="q2")
    rest = await engine.stage(now + 10)

    assert only_q2.queues == {"q2": 1}
    assert rest.queues == {QUEUE: 1}
    assert [j.args["i"] for j in await engine.fetch(QUEUE, 5, "n", now + 10)] == [1]


async def test_prune_deletes_old_finished_jobs_in_bounded_chunks(engines: MakeEngine) -> None:
    engine = await opened(engines)
    inserted = await engine.insert([spec(i) for i in range(6)])
    await engine.fetch(QUEUE, 6, "n", time.time())
    now = time.time()
    old = [Ack(j.id, JobState.COMPLETED, now - 1000, 1) for j in inserted[:4]]
    recent = [Ack(j.id, JobState.COMPLETED, now, 1) for j in inserted[4:]]
    await engine.ack([*old, *recent], "n")
    ages = {JobState.COMPLETED: 100.0, JobState.DISCARDED: 100.0}

    first = await engine.prune(ages, now, 3)
    second = await engine.prune(ages, now, 3)
    third = await engine.prune(ages, now, 3)

    assert (first, second, third) == (3, 1, 0)
    assert {j.id for j in engine.list_jobs(JobFilter())} == {j.id for j in inserted[4:]}


async def test_poison_rows_are_discarded_on_fetch_and_shown_leniently(
    engines: MakeEngine, pg: Schemas
) -> None:
    engine = await opened(engines)
    inserted = await engine.insert([spec(i) for i in range(4)])
    raw(pg, "UPDATE underway_jobs SET meta = '[1]' WHERE id = %s", (inserted[1].id,))
    raw(pg, "UPDATE underway_jobs SET tags = '{\"a\": 1}' WHERE id = %s", (inserted[2].id,))

    claimed = await engine.fetch(QUEUE, 10, "n", time.time())
    listed = {j.id: j for j in engine.list_jobs(JobFilter())}

    assert [j.id for j in claimed] == [inserted[0].id, inserted[3].id]
    for job, column in ((inserted[1], "meta"), (inserted[2], "tags")):
        shown = listed[job.id]
        assert shown.state is JobState.DISCARDED
        assert shown.errors[-1].error.startswith(f"undecodable job row: {column}: ")
    assert listed[inserted[1].id].meta == {"__undecodable__": "[1]"}


async def test_admin_retry_cancel_list_and_counts(engines: MakeEngine) -> None:
    engine = await opened(engines)
    a, b, c = await engine.insert([spec(1), spec(2, queue="other"), spec(3)])
    await engine.fetch(QUEUE, 1, "n", time.time())
    await engine.ack([Ack(a.id, JobState.DISCARDED, time.time(), 1, error="gone")], "n")

    retried = await asyncio.to_thread(engine.retry_job, a.id, time.time())
    cancelled = await asyncio.to_thread(engine.cancel_job, c.id, time.time())
    listed = engine.list_jobs(JobFilter(states=(JobState.AVAILABLE,), queue=QUEUE))

    assert retried is not None
    assert (retried.state, retried.discarded_at, retried.max_attempts) == (
        JobState.AVAILABLE,
        None,
        20,
    )
    assert cancelled is not None
    assert cancelled.state is JobState.CANCELLED
    assert cancelled.errors[-1].error == "cancelled: by request"
    assert [j.id for j in listed] == [a.id]
    assert [j.id for j in engine.list_jobs(JobFilter(worker="tests.pg", limit=2))] == [c.id, b.id]
    assert engine.counts() == {
        (QUEUE, JobState.AVAILABLE): 1,
        (QUEUE, JobState.CANCELLED): 1,
        ("other", JobState.AVAILABLE): 1,
    }


# -- leases and cron slots ------------------------------------------------------------------


async def test_a_lease_has_one_holder_until_it_expires_or_is_released(
    engines: MakeEngine,
) -> None:
    engine = await opened(engines)
    now = time.time()  # the nodes' clocks do not matter: expiry is on the server's clock

    assert await engine.acquire_lease("leader", "a", 0.6, now)
    assert not await engine.acquire_lease("leader", "b", 0.6, now + 3600)
    await asyncio.sleep(0.3)
    assert await engine.acquire_lease("leader", "a", 0.6, now)  # renewed for 0.6 s more
    await asyncio.sleep(0.4)
    assert not await engine.acquire_lease("leader", "b", 0.6, now)  # renewal still holds
    await asyncio.sleep(0.4)
    assert await engine.acquire_lease("leader", "b", 0.6, now)  # expired: taken over
    await engine.release_lease("leader", "a")  # not the holder: nothing changes
    assert not await engine.acquire_lease("leader", "a", 0.6, now)
    await engine.release_lease("leader", "b")
    assert await engine.acquire_lease("leader", "a", 0.6, now)


async def test_insert_for_slot_fires_once_per_slot_across_engines(engines: MakeEngine) -> None:
    a, b = await opened(engines), await opened(engines)

    first = await a.insert_for_slot("nightly", 1000.0, spec(1))
    same = await b.insert_for_slot("nightly", 1000.0, spec(1))
    older = await b.insert_for_slot("nightly", 940.0, spec(1))
    racing = await asyncio.gather(
        a.insert_for_slot("nightly", 1060.0, spec(2)), b.insert_for_slot("nightly", 1060.0, spec(2))
    )

    assert first is not None
    assert first.args == {"i": 1}
    assert (same, older) == (None, None)
    assert sum(job is not None for job in racing) == 1
    assert sum(a.counts().values()) == 2


# -- notifications, signals, schemas --------------------------------------------------------


async def test_an_insert_wakes_a_waiting_engine_at_once(engines: MakeEngine) -> None:
    producer, listener = await opened(engines), await opened(engines)
    await listener.wait_for_change(0)  # starts listening

    await producer.insert([spec(1, scheduled_at=time.time() + 60)])  # nothing available
    assert await listener.wait_for_change(0.3) is False
    waiting = asyncio.create_task(listener.wait_for_change(30.0))
    started = time.monotonic()
    await producer.insert([spec(2)])
    woke = await waiting
    elapsed = time.monotonic() - started

    assert woke is True
    assert elapsed < 10.0  # woken by the insert, long before the 30 s wait runs out


async def test_signals_reach_every_engine_once(engines: MakeEngine) -> None:
    a, b = await opened(engines), await opened(engines)
    await a.publish({"action": "before"})
    assert await a.signals() == []  # the first call only marks the start
    assert await b.signals() == []

    await a.publish({"action": "pause", "queue": "mail"})
    await b.publish({"action": "scale", "queue": "mail", "limit": 3})
    seen: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}

    async def both_have_two() -> bool:
        seen["a"] += await a.signals()
        seen["b"] += await b.signals()
        return len(seen["a"]) >= 2 and len(seen["b"]) >= 2

    await wait_until(both_have_two, 3.0, interval=0.01)
    expected = [
        {"action": "pause", "queue": "mail"},
        {"action": "scale", "queue": "mail", "limit": 3},
    ]
    assert seen == {"a": expected, "b": expected}
    assert await a.signals() == []
    assert await b.signals() == []


async def test_two_schemas_in_one_database_stay_apart(engines: MakeEngine, pg: Schemas) -> None:
    one, two = await opened(engines, pg.url()), await opened(engines, pg.url())
    await one.wait_for_change(0)
    await two.wait_for_change(0)
    assert await two.signals() == []

    (job,) = await one.insert([spec(1)])
    await one.publish({"action": "pause", "queue": QUEUE})

    assert await one.wait_for_change(2.0) is True
    assert await two.wait_for_change(0.3) is False
    assert await two.signals() == []
    assert two.counts() == {}
    assert await two.fetch(QUEUE, 10, "n", time.time()) == []
    assert [j.id for j in await one.fetch(QUEUE, 10, "n", time.time())] == [job.id]
    schemas_with_jobs = raw(
        pg,
        "SELECT table_schema FROM information_schema.tables WHERE table_name = 'underway_jobs'"
        " AND table_schema = ANY(%s)",
        (pg.made[1:],),
    )
    assert sorted(r[0] for r in schemas_with_jobs) == sorted(pg.made[1:])


# -- the application's own connection -------------------------------------------------------


async def test_enqueue_in_an_app_psycopg_transaction(engines: MakeEngine, pg: Schemas) -> None:
    engine, listener = engines(), await opened(engines)
    await listener.wait_for_change(0)

    with pg.connect(autocommit=False) as conn:
        conn.row_factory = dict_row  # type: ignore[assignment]
        (gone,) = await asyncio.to_thread(engine.insert_sync, [spec(1)], conn=conn)
        conn.rollback()
        assert await listener.wait_for_change(0.3) is False
        (kept,) = await asyncio.to_thread(engine.insert_sync, [spec(2)], conn=conn)
        assert engine.get_job(kept.id) is None  # not visible before the commit
        conn.commit()
    woke = await listener.wait_for_change(2.0)

    assert woke is True
    assert engine.get_job(gone.id) is None
    stored = engine.get_job(kept.id)
    assert stored is not None
    assert stored.args == {"i": 2}


async def test_enqueue_in_an_app_async_psycopg_transaction(
    engines: MakeEngine, pg: Schemas
) -> None:
    engine, listener = engines(), await opened(engines)
    await listener.wait_for_change(0)

    async with await psycopg.AsyncConnection.connect(pg.base) as conn:
        (gone,) = await engine.insert([spec(1)], conn=conn)
        await conn.rollback()
        assert await listener.wait_for_change(0.3) is False
        first, dup = await engine.insert(
            [spec(2, unique_key="u"), spec(3, unique_key="u")], conn=conn
        )
        await conn.commit()
    woke = await listener.wait_for_change(2.0)

    assert woke is True
    assert engine.get_job(gone.id) is None
    assert (first.conflict, dup.conflict, dup.id) == (False, True, first.id)
    assert engine.counts() == {(QUEUE, JobState.AVAILABLE): 1}


def test_a_foreign_connection_object_is_refused(pg: Schemas) -> None:
    engine = PostgresEngine(pg.url())

    with pytest.raises(ConfigError, match="psycopg Connection"):
        engine.insert_sync([spec(1)], conn=object())


# -- migrations, URLs, errors, lost connections ---------------------------------------------


def test_concurrent_migrations_apply_once(pg: Schemas) -> None:
    url = pg.url()
    migrators = [PostgresEngine(url) for _ in range(4)]
    barrier = threading.Barrier(len(migrators))

    def migrate(engine: PostgresEngine) -> list[str]:
        barrier.wait(timeout=10)
        return engine.migrate()

    with ThreadPoolExecutor(len(migrators)) as pool:
        results = list(pool.map(migrate, migrators))
    again = migrators[0].migrate()

    assert sorted(results) == [[], [], [], ["0001_initial", "0002_live_and_done", "0003_counters"]]
    assert again == []
    applied = raw(pg, "SELECT version, name FROM underway_migrations ORDER BY version")
    assert applied == [(1, "initial"), (2, "live_and_done"), (3, "counters")]


TCP = (
    "keepalives=1&keepalives_idle=10&keepalives_interval=5&keepalives_count=3"
    "&tcp_user_timeout=30000"
)


async def test_every_connection_finds_a_vanished_server_dead(engines: MakeEngine) -> None:
    """Keepalives and a TCP user timeout, so a silently dead server cannot hang a call."""
    engine = await opened(engines)
    await engine.heartbeat("n", time.time(), {})
    async with engine._connection() as conn:
        pooled = conn.info.get_parameters()
    beat = engine._beat._conn
    assert beat is not None
    for params in (pooled, beat.info.get_parameters()):
        assert params["keepalives_idle"] == "10"
        assert params["tcp_user_timeout"] == "30000"


def test_url_options_are_validated_and_kept_from_the_driver() -> None:
    engine = open_engine(
        "postgres://u:secret@db.example:5433/app?schema=tenant_1&pool_size=3&sslmode=disable"
    )

    assert isinstance(engine, PostgresEngine)
    assert (engine.schema, engine.options.pool_size) == ("tenant_1", 3)
    assert engine.options.dsn == f"postgres://u:secret@db.example:5433/app?sslmode=disable&{TCP}"
    assert engine.options.shown == "postgres://u:***@db.example:5433/app?sslmode=disable"
    spaced = PostgresEngine("postgresql://h/app?options=-c%20work_mem%3D8MB&schema=s")
    assert spaced.options.dsn == f"postgresql://h/app?options=-c%20work_mem%3D8MB&{TCP}"
    own = PostgresEngine("postgresql://h/app?keepalives=0&tcp_user_timeout=5")
    assert own.options.dsn == (
        "postgresql://h/app?keepalives=0&tcp_user_timeout=5&keepalives_idle=10"
        "&keepalives_interval=5&keepalives_count=3"
    )
    for bad in ("schema=a-b", "schema=", "pool_size=0", "pool_size=x"):
        with pytest.raises(ConfigError):
            PostgresEngine(f"postgresql://localhost/app?{bad}")


def test_a_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    for name in [m for m in sys.modules if m.startswith("underway.jobs.engines.postgres")]:
        monkeypatch.delitem(sys.modules, name)

    with pytest.raises(ConfigError, match=r"pip install 'underway\[postgres\]'"):
        open_engine("postgresql://localhost/app")


async def test_an_unreachable_server_is_a_database_error_without_the_password() -> None:
    engine = PostgresEngine("postgresql://postgres:s3cret@127.0.0.1:1/nowhere")

    with pytest.raises(DatabaseError) as info:
        await engine.open()
    await engine.close()

    message = str(info.value)
    assert "127.0.0.1:1" in message
    assert "s3cret" not in message
    assert isinstance(info.value.__cause__, psycopg.OperationalError)


async def _terminate(pg: Schemas, app: str) -> int:
    def run() -> int:
        found = raw(
            pg,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (app,),
        )
        return len(found)

    return await asyncio.to_thread(run)


async def test_pool_and_listener_recover_from_killed_connections(
    engines: MakeEngine, pg: Schemas
) -> None:
    schema = pg.name()
    engine = await opened(engines, pg.url(schema, application_name="uw_killed"))
    producer = await opened(engines, pg.url(schema))
    await engine.insert([spec(1)])
    await engine.wait_for_change(0)
    assert await engine.signals() == []

    assert await _terminate(pg, "uw_killed") >= 2  # the pool's and the listener's
    (claimed,) = await engine.fetch(QUEUE, 5, "n", time.time())  # on a fresh connection
    listener = engine._listener
    assert listener is not None
    await wait_until(lambda: listener.connected, 5.0, message="listener reconnected")
    await engine.wait_for_change(0)
    await producer.publish({"action": "resume", "queue": QUEUE})
    await producer.insert([spec(2)])

    assert claimed.args == {"i": 1}
    assert await engine.wait_for_change(2.0) is True
    assert await wait_until(engine.signals, 10.0) == [{"action": "resume", "queue": QUEUE}]


# -- a running node -------------------------------------------------------------------------


async def test_a_node_processes_2000_jobs_once_each_despite_killed_connections(
    pg: Schemas,
) -> None:
    url = pg.url(application_name="uw_node")
    jobs = Jobs(url, queues={QUEUE: 50}, **FAST)
    runs: Counter[int] = Counter()
    killed = asyncio.Event()

    @jobs.worker(queue=QUEUE, name="tests.pg.count")
    async def count(job: Job[Any]) -> None:
        runs[job.args["n"]] += 1

    inserted = await jobs.enqueue_many([count.new({"n": n}) for n in range(2000)])
    try:
        async with jobs:

            async def done() -> bool:
                if not killed.is_set() and len(runs) >= 500:
                    killed.set()
                    await _terminate(pg, "uw_node")
                counts = await asyncio.to_thread(jobs.counts_sync)
                return counts.get((QUEUE, JobState.COMPLETED), 0) == len(inserted)

            await wait_until(done, 20.0, interval=0.05, message="all jobs completed")
    finally:
        await jobs.engine.close()

    assert killed.is_set()
    assert sorted(runs) == list(range(2000))
    assert set(runs.values()) == {1}


async def test_engine_connections_plan_without_nested_loops_or_jit(engines: MakeEngine) -> None:
    """A statement whose only plan is a nested loop gets the planner's cost for a disabled
    node; with JIT on, that cost made the server compile it (about 150 ms each time)."""
    engine = await opened(engines)
    async with engine._connection() as conn:
        settings = "SELECT current_setting('enable_nestloop'), current_setting('jit')"
        cur = await conn.execute(settings)
        assert await cur.fetchone() == ("off", "off")
        plan = await conn.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) SELECT s.id FROM (SELECT now() AS c) AS t "
            f'LEFT JOIN "{engine.schema}".underway_signals AS s '
            "ON s.published_at >= to_timestamp(0)"
        )
        row = await plan.fetchone()
    assert row is not None
    assert "Nested Loop" in json.dumps(row[0])  # the plan that used to be JIT-compiled
    assert "JIT" not in row[0][0]
