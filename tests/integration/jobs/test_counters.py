"""Per-minute counters of finished attempts, on both engines: a scripted run gives exactly
its outcomes by queue and worker, batches and nodes add up, a late ack counts nothing,
cancellations by request count, the pruner keeps the window, a database of the previous
version upgrades while its nodes keep working, the database adds minutes up per bucket and
by queue, worker or neither, and bad arguments are refused by name."""

from __future__ import annotations

import asyncio
import random
import re
import sqlite3
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from underway.errors import ConfigError
from underway.jobs import Cancel, Job, Jobs, JobState, MinuteCount, Pruning, Snooze
from underway.jobs._counters import MAX_BUCKET, counter_query, read_counters
from underway.jobs._runtime.pruner import Pruner
from underway.jobs.engines._sql import migrations, query, split_statements
from underway.jobs.engines.base import JobCounters
from underway.jobs.job import JobSpec
from underway.jobs.outcomes import Ack

from ..conftest import Database, MakeJobs, wait_for_state, wait_until

KINDS = ("completed", "failed", "discarded", "cancelled", "snoozed")
DAY = 86_400.0
# (queue, worker): how many jobs end each way. "retried" fail once, then complete;
# "snoozing" snooze once, then complete.
SCRIPT: dict[tuple[str, str], dict[str, int]] = {
    ("q1", "alpha"): {"complete": 3, "retried": 2, "discard": 1, "cancel": 1, "snoozing": 1},
    ("q1", "beta"): {"complete": 1, "retried": 0, "discard": 2, "cancel": 0, "snoozing": 2},
    ("q2", "alpha"): {"complete": 0, "retried": 1, "discard": 0, "cancel": 3, "snoozing": 0},
    ("q2", "beta"): {"complete": 4, "retried": 1, "discard": 1, "cancel": 2, "snoozing": 1},
}


def totals(rows: list[MinuteCount]) -> dict[tuple[str | None, str | None], dict[str, int]]:
    """The counts of every minute added up by (queue, worker)."""
    out: dict[tuple[str | None, str | None], Counter[str]] = {}
    for row in rows:
        out.setdefault((row.queue, row.worker), Counter()).update(
            {kind: getattr(row, kind) for kind in KINDS}
        )
    return {key: {k: c[k] for k in KINDS} for key, c in out.items()}


def expected(script: dict[str, int]) -> dict[str, int]:
    return {
        "completed": script["complete"] + script["retried"] + script["snoozing"],
        "failed": script["retried"],
        "discarded": script["discard"],
        "cancelled": script["cancel"],
        "snoozed": script["snoozing"],
    }


def scripted_app(make_jobs: MakeJobs) -> tuple[Jobs, dict[str, Any]]:
    jobs = make_jobs(queues={"q1": 5, "q2": 5})

    async def perform(job: Job[Any]) -> Any:
        how = job.args["how"]
        if how == "discard" or (how == "retried" and job.attempt == 1):
            raise RuntimeError("boom")
        if how == "cancel":
            return Cancel("not needed")
        if how == "snoozing" and not job.meta.get("snoozed"):
            return Snooze(0)
        return None

    alpha = jobs.worker(name="alpha", backoff=0)(perform)
    beta = jobs.worker(name="beta", backoff=0)(perform)
    return jobs, {"alpha": alpha, "beta": beta}


async def test_a_scripted_run_counts_each_outcome_by_queue_and_worker(
    make_jobs: MakeJobs,
) -> None:
    jobs, workers = scripted_app(make_jobs)
    specs: list[JobSpec] = []
    for (queue, worker), script in SCRIPT.items():
        for how, n in script.items():
            attempts = 1 if how == "discard" else 3
            specs += [
                workers[worker].new({"how": how}, queue=queue, max_attempts=attempts)
                for _ in range(n)
            ]
    started = time.time()

    async with jobs:
        inserted = await jobs.enqueue_many(specs)
        for job in inserted:
            await wait_for_state(jobs, job.id, timeout=30)
        rows = await jobs.job_counters(since=started - 60)

    assert totals(rows) == {key: expected(script) for key, script in SCRIPT.items()}
    assert [(r.minute, r.queue, r.worker) for r in rows] == sorted(
        (r.minute, r.queue, r.worker) for r in rows
    )
    for row in rows:
        assert row.minute.tzinfo is UTC
        assert row.minute.second == row.minute.microsecond == 0
        assert started - 60 <= row.minute.timestamp() <= time.time()
        assert row.finished == row.completed + row.discarded + row.cancelled
    # The same rows, by the synchronous call and filtered by queue and worker.
    sync = await asyncio.to_thread(jobs.job_counters_sync, since=started - 60)
    assert sync == rows
    only = await jobs.job_counters(since=started - 60, queue="q2", worker=workers["beta"])
    assert totals(only) == {("q2", "beta"): expected(SCRIPT["q2", "beta"])}
    both = await jobs.job_counters(since=started - 60, queue=["q1", "q2"], worker=["alpha"])
    assert set(totals(both)) == {("q1", "alpha"), ("q2", "alpha")}


async def claim(jobs: Jobs, queue: str, n: int, node: str) -> list[Job[Any]]:
    found: list[Job[Any]] = []
    while len(found) < n:
        found += await jobs.engine.fetch(queue, n - len(found), node, time.time())
    return found


async def test_acks_of_a_batch_add_up_by_minute_and_a_late_ack_counts_nothing(
    make_jobs: MakeJobs,
) -> None:
    jobs = make_jobs()
    worker = jobs.worker(name="w")(lambda job: None)
    await jobs.enqueue_many([worker.new({}, queue=q) for q in ("a", "b") for _ in range(6)])
    minute = (time.time() // 60 - 10) * 60  # ten minutes ago, at the start of a minute
    a, b = await claim(jobs, "a", 6, "n1"), await claim(jobs, "b", 6, "n1")
    acks = [
        Ack(a[0].id, JobState.COMPLETED, minute + 1, 1),
        Ack(a[1].id, JobState.COMPLETED, minute + 59.9, 1),
        Ack(a[2].id, JobState.COMPLETED, minute + 60, 1),  # the next minute
        Ack(a[3].id, JobState.RETRYABLE, minute + 2, 1, scheduled_at=minute + 9, error="x"),
        Ack(a[4].id, JobState.DISCARDED, minute + 3, 1, error="x"),
        Ack(a[5].id, JobState.CANCELLED, minute + 4, 1, error="cancelled: no"),
        *(Ack(j.id, JobState.SCHEDULED, minute + 5, 1, minute + 99, snoozed=True) for j in b),
    ]

    await jobs.engine.ack(acks, "n1")
    await jobs.engine.ack(acks, "n1")  # again: a late ack changes no job, counts nothing
    rows = await jobs.job_counters(since=minute, until=minute + 120)

    start = datetime.fromtimestamp(minute, UTC)
    after = start + timedelta(minutes=1)
    assert rows == [
        MinuteCount(start, "a", "w", 2, 1, 1, 1, 0),
        MinuteCount(start, "b", "w", 0, 0, 0, 0, 6),
        MinuteCount(after, "a", "w", 1, 0, 0, 0, 0),
    ]
    assert await jobs.job_counters(since=minute + 60, until=minute + 120) == rows[2:]
    assert await jobs.job_counters(since=minute + 59, until=minute + 60) == rows[:2]


async def test_attempts_of_a_dead_node_count_once_when_rescued(make_jobs: MakeJobs) -> None:
    jobs = make_jobs()
    worker = jobs.worker(name="w")(lambda job: None)
    await jobs.enqueue_many(
        [worker.new({}, queue="a", max_attempts=3), worker.new({}, queue="b", max_attempts=1)]
    )
    retried, last = await claim(jobs, "a", 1, "dead"), await claim(jobs, "b", 1, "dead")
    now = time.time()

    # The node never heartbeated: its attempts ended when it died, as the rescue says.
    assert await jobs.engine.rescue(now - 30, now) == {"a": 1}
    late = [Ack(j.id, JobState.COMPLETED, now, 1) for j in (*retried, *last)]
    await jobs.engine.ack(late, "dead")  # the dead node's late acks change nothing
    rows = await jobs.job_counters(since=now - 60)

    minute = datetime.fromtimestamp(now // 60 * 60, UTC)
    assert rows == [
        MinuteCount(minute, "a", "w", 0, 1, 0, 0, 0),
        MinuteCount(minute, "b", "w", 0, 0, 1, 0, 0),
    ]
    assert await jobs.engine.rescue(now - 30, now) == {}  # nothing is rescued twice
    assert await jobs.job_counters(since=now - 60) == rows


async def test_cancellations_by_request_are_counted_once(make_jobs: MakeJobs) -> None:
    jobs = make_jobs()
    started = asyncio.Event()

    @jobs.worker(name="slow")
    async def slow(job: Job[Any]) -> None:
        started.set()
        await asyncio.sleep(60)

    later = [await slow.enqueue({}, schedule_in=3600) for _ in range(4)]
    since = time.time() - 60
    await jobs.cancel_job(later[0].id)
    assert await jobs.cancel_all_jobs(queue="default", state="scheduled") == 3
    assert await jobs.cancel_job(later[0].id) is not None  # already cancelled: no change

    async with jobs:
        running = await slow.enqueue({})
        await asyncio.wait_for(started.wait(), 10)
        await jobs.cancel_job(running.id)  # its run is interrupted; its ack changes nothing
        await wait_for_state(jobs, running.id)
    rows = await jobs.job_counters(since=since)

    assert totals(rows) == {("default", "slow"): {**dict.fromkeys(KINDS, 0), "cancelled": 5}}


async def test_nodes_acking_into_the_same_minute_add_up(make_jobs: MakeJobs) -> None:
    jobs = make_jobs()
    worker = jobs.worker(name="w")(lambda job: None)
    await jobs.enqueue_many([worker.new({}) for _ in range(400)])
    nodes = [f"node-{i}" for i in range(4)]
    claimed = [await claim(jobs, "default", 100, node) for node in nodes]
    minute = (time.time() // 60) * 60

    async def ack(node: str, batch: list[Job[Any]]) -> None:
        for i in range(0, len(batch), 10):  # many batches of each node, all at once
            acks = [Ack(j.id, JobState.COMPLETED, minute + 1, 1) for j in batch[i : i + 10]]
            await jobs.engine.ack(acks, node)

    await asyncio.gather(*(ack(n, b) for n, b in zip(nodes, claimed, strict=True)))

    rows = await jobs.job_counters(since=minute, until=minute + 60)
    assert [(r.queue, r.worker, r.completed) for r in rows] == [("default", "w", 400)]


@pytest.mark.postgres_only
async def test_nodes_acking_many_rows_at_once_neither_deadlock_nor_lose_counts(
    make_jobs: MakeJobs,
) -> None:
    # Six nodes, each on its own pool, write batches that each add to many of the same
    # (minute, queue, worker) rows, the jobs shuffled differently on every node: without
    # the upsert's key order two of them lock the same rows in opposite orders.
    apps = [make_jobs(node_name=f"node-{i}") for i in range(6)]
    queues, names = ("q0", "q1", "q2", "q3"), ("w0", "w1", "w2", "w3")
    workers = [apps[0].worker(name=name)(lambda job: None) for name in names]
    await apps[0].enqueue_many(
        [w.new({}, queue=q) for w in workers for q in queues for _ in range(48)]
    )
    claimed = [
        [job for q in queues for job in await claim(app, q, 32, f"node-{i}")]
        for i, app in enumerate(apps)
    ]
    minute = (time.time() // 60 - 30) * 60
    rng = random.Random(7)
    plans: list[list[list[Ack]]] = []
    for batch in claimed:
        rng.shuffle(batch)
        acks = []
        for job in batch:
            at, pick = minute + rng.choice((1, 61, 121)), rng.random()
            if pick < 0.5:
                acks.append(Ack(job.id, JobState.COMPLETED, at, 1))
            elif pick < 0.7:
                acks.append(Ack(job.id, JobState.RETRYABLE, at, 1, scheduled_at=at, error="x"))
            elif pick < 0.85:
                acks.append(Ack(job.id, JobState.DISCARDED, at, 1, error="x"))
            else:
                acks.append(Ack(job.id, JobState.SCHEDULED, at, 1, at + 99, snoozed=True))
        plans.append([acks[k : k + 40] for k in range(0, len(acks), 40)])

    async def ack(app: Jobs, node: str, batches: list[list[Ack]]) -> None:
        for acks in batches:
            await app.engine.ack(acks, node)

    await asyncio.gather(*(ack(app, f"node-{i}", plans[i]) for i, app in enumerate(apps)))

    want: Counter[tuple[float, str, str, str]] = Counter()
    by_id = {job.id: job for batch in claimed for job in batch}
    for batches in plans:
        for a in (a for acks in batches for a in acks):
            kind = "snoozed" if a.snoozed else a.state.value
            kind = {"retryable": "failed"}.get(kind, kind)
            job = by_id[a.job_id]
            want[(a.at // 60 * 60, job.queue, job.worker, kind)] += 1
    rows = await apps[0].job_counters(since=minute, until=minute + 180)
    got: Counter[tuple[float, str | None, str | None, str]] = Counter()
    for row in rows:
        for kind in KINDS:
            if getattr(row, kind):
                got[(row.minute.timestamp(), row.queue, row.worker, kind)] = getattr(row, kind)
    assert got == want
    assert sum(want.values()) == 6 * 4 * 32


@pytest.mark.postgres_only
async def test_two_nodes_on_one_database_add_up(make_jobs: MakeJobs) -> None:
    apps = [make_jobs(node_name=f"node-{i}", queues={"default": 4}) for i in range(2)]
    gate = asyncio.Event()
    ran: Counter[str] = Counter()
    for app in apps:

        @app.worker(name="w")
        async def work(job: Job[Any], app: Jobs = app) -> None:
            ran[app.config.name] += 1
            await gate.wait()

    started = time.time()
    async with apps[0], apps[1]:
        inserted = await apps[0].enqueue_many([apps[0].workers["w"].new({}) for _ in range(40)])
        # Each node holds jobs of its own before any finishes, so both write acks.
        await wait_until(lambda: len(ran) == 2, 10)
        gate.set()
        for job in inserted:
            await wait_for_state(apps[0], job.id, timeout=30)
        rows = await apps[1].job_counters(since=started - 60)

    assert sum(r.completed for r in rows) == 40
    assert {(r.queue, r.worker) for r in rows} == {("default", "w")}
    assert set(ran) == {"node-0", "node-1"}


async def test_the_pruner_deletes_counters_older_than_the_window(make_jobs: MakeJobs) -> None:
    jobs = make_jobs()
    engine = jobs.engine
    assert isinstance(engine, JobCounters)
    worker = jobs.worker(name="w")(lambda job: None)
    await jobs.enqueue_many([worker.new({}) for _ in range(6)])
    claimed = await claim(jobs, "default", 6, "n")
    now = time.time()
    ages = [9 * DAY, 8 * DAY, 7 * DAY + 120, 7 * DAY - 120, DAY, 0]
    for job, age in zip(claimed, ages, strict=True):
        await engine.ack([Ack(job.id, JobState.COMPLETED, now - age, 1)], "n")
    kept = [now - age for age in ages[3:]]

    assert await engine.prune_counters(now - 7 * DAY, 2) == 2  # bounded: the oldest two
    assert len(await jobs.job_counters(since=now - 10 * DAY)) == 4
    pruner = Pruner(engine, interval=60, max_age={}, counters_max_age=7 * DAY, limit=1, node="n")
    await pruner.tick()  # limit 1: one row a pass
    await pruner.tick()
    await pruner.tick()  # nothing left that is due

    rows = await jobs.job_counters(since=now - 10 * DAY)
    assert [r.minute.timestamp() for r in rows] == [t // 60 * 60 for t in kept]


async def test_the_window_is_the_pruning_option(make_jobs: MakeJobs) -> None:
    jobs = make_jobs(prune=Pruning(counters=3600, interval=0.05))
    worker = jobs.worker(name="w")(lambda job: None)
    await jobs.enqueue_many([worker.new({}) for _ in range(2)])
    old, new = await claim(jobs, "default", 2, "n")
    now = time.time()
    await jobs.engine.ack([Ack(old.id, JobState.COMPLETED, now - 7200, 1)], "n")
    await jobs.engine.ack([Ack(new.id, JobState.COMPLETED, now, 1)], "n")

    async with jobs:

        async def old_gone() -> bool:
            return len(await jobs.job_counters(since=now - DAY)) == 1

        await wait_until(old_gone, 10)
    rows = await jobs.job_counters(since=now - DAY)
    assert [r.minute.timestamp() for r in rows] == [now // 60 * 60]


@pytest.mark.parametrize("value", [0, -1, "7d", True, float("nan")])
def test_a_bad_window_is_refused(value: object) -> None:
    with pytest.raises(ConfigError, match=r"Pruning\.counters must be seconds > 0"):
        Pruning(counters=value)  # type: ignore[arg-type]


NAIVE = datetime(2024, 1, 1)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"since": None}, "since is required"),
        ({"since": NAIVE}, "since must be an aware datetime"),
        ({"since": "yesterday"}, "since must be a datetime or epoch seconds"),
        ({"since": float("inf")}, "since must be a datetime or epoch seconds"),
        ({"since": 0, "until": True}, "until must be a datetime or epoch seconds"),
        ({"since": 0, "until": NAIVE}, "until must be an aware datetime"),
        # Milliseconds by mistake, beyond any date: refused alike on both engines.
        ({"since": 0, "until": 1e13}, "until must be epoch seconds of the years 1 to 9999"),
        ({"since": -1e12}, "since must be epoch seconds of the years 1 to 9999"),
        ({"since": 100, "until": 100}, "since must be earlier than until"),
        ({"since": time.time() + 3600}, "since must be earlier than until"),
        ({"since": 0, "queue": []}, "queue is an empty list"),
        ({"since": 0, "queue": "bad queue!"}, "queue name must be"),
        ({"since": 0, "queue": 5}, "queue must be a string or a list"),
        ({"since": 0, "worker": ""}, "worker must be a worker or its full name"),
        ({"since": 0, "worker": [1]}, "worker must be a string or a list"),
        *(
            ({"since": 0, "bucket": bad}, "bucket must be seconds, .*, got " + re.escape(repr(bad)))
            for bad in (0, -60, 59, 90, 61, 60.0, True, "60", None, MAX_BUCKET + 60)
        ),
        ({"since": 0, "by": "node"}, "by must list only 'queue' and 'worker', got 'node'"),
        ({"since": 0, "by": ["queue", None]}, "by must list only 'queue' and 'worker', got None"),
        ({"since": 0, "by": ["queue", "queue"]}, "by names a dimension twice"),
        ({"since": 0, "by": 5}, "by must be a list of 'queue' and 'worker', got 5"),
        ({"since": 0, "by": {"queue": 1}}, "by must be a list of 'queue' and 'worker'"),
        ({"since": 0, "by": b"queue"}, "by must be a list of 'queue' and 'worker'"),
    ],
)
async def test_bad_arguments_are_refused_by_name(
    make_jobs: MakeJobs, arguments: dict[str, Any], message: str
) -> None:
    jobs = make_jobs()
    with pytest.raises(ConfigError, match=message):
        await jobs.job_counters(**arguments)
    with pytest.raises(ConfigError, match=message):
        jobs.job_counters_sync(**arguments)


def test_an_engine_without_counters_is_refused() -> None:
    with pytest.raises(ConfigError, match="keeps no job counters"):
        read_counters(object(), counter_query(since=0))


# -- sums: per bucket and by queue, worker or neither, added up by the database --------------

HOUR = 3600.0
# (minute from the start, queue, worker, completed, failed, discarded, cancelled, snoozed)
SEEDED = [
    (m, q, w, (m + k) % 4, (m * 7 + k) % 3, int(m % 11 == k), int(m % 13 == 0), (m + k) % 2)
    for m in (0, 1, 2, 4, 5, 9, 14, 15, 16, 29, 30, 31, 59, 60, 61, 89, 119, 120, 179)
    for k, (q, w) in enumerate([("a", "w1"), ("a", "w2"), ("b", "w1"), ("c", "w3")])
    if (m + k) % 3
]


def seed_counters(database: Database, start: float) -> None:
    """The rows of :data:`SEEDED`, written straight into the counters from ``start``."""
    minute = "to_timestamp(?)" if database.postgres else "?"
    for m, *row in SEEDED:
        database.sql(
            "INSERT INTO underway_counters (minute, queue, worker, completed, failed,"
            f" discarded, cancelled, snoozed) VALUES ({minute}, ?, ?, ?, ?, ?, ?, ?)",
            start + 60 * m,
            *row,
        )


def summed(
    rows: list[MinuteCount], since: float, bucket: int, by: tuple[str, ...]
) -> list[MinuteCount]:
    """The per-minute ``rows`` added up in Python, as the database is asked to."""
    sums: dict[tuple[float, str | None, str | None], list[int]] = {}
    for row in rows:
        start = since + (row.minute.timestamp() - since) // bucket * bucket
        key = (
            start,
            row.queue if "queue" in by else None,
            row.worker if "worker" in by else None,
        )
        counts = sums.setdefault(key, [0] * len(KINDS))
        for i, kind in enumerate(KINDS):
            counts[i] += getattr(row, kind)
    return [
        MinuteCount(datetime.fromtimestamp(start, UTC), queue, worker, *counts)
        for (start, queue, worker), counts in sorted(
            sums.items(), key=lambda item: (item[0][0], item[0][1] or "", item[0][2] or "")
        )
    ]


BYS: list[tuple[str, ...]] = [("queue", "worker"), ("queue",), ("worker",), ()]


@pytest.mark.parametrize("bucket", [60, 120, 300, 900, 3600, 7200])
async def test_bucket_sums_are_the_sums_of_the_minutes(
    make_jobs: MakeJobs, database: Database, bucket: int
) -> None:
    jobs = make_jobs()
    jobs.migrate_sync()
    start = (time.time() // HOUR - 5) * HOUR  # five hours ago, on the hour
    seed_counters(database, start)
    end = start + 3 * HOUR
    minutes = await jobs.job_counters(since=start, until=end)
    assert len(minutes) == len(SEEDED)
    for since in (start, start + 90.5, start + 13 * 60):  # on the hour, and not
        aligned = since // 60 * 60
        in_range = [r for r in minutes if r.minute.timestamp() >= aligned]
        for by in BYS:
            rows = await jobs.job_counters(since=since, until=end, bucket=bucket, by=by)
            assert rows == summed(in_range, aligned, bucket, by), (since, by)
            assert len({(r.minute, r.queue, r.worker) for r in rows}) == len(rows)
        # Filtered by queue and worker, then summed.
        some = await jobs.job_counters(
            since=since, until=end, queue=["a", "c"], worker="w1", bucket=bucket, by="queue"
        )
        chosen = [r for r in in_range if r.queue in ("a", "c") and r.worker == "w1"]
        assert some == summed(chosen, aligned, bucket, ("queue",))
    total = await asyncio.to_thread(
        jobs.job_counters_sync, since=start, until=end, bucket=3 * 3600, by=()
    )
    assert total == [
        MinuteCount(
            datetime.fromtimestamp(start, UTC),
            None,
            None,
            *(sum(counts) for counts in zip(*(row[3:] for row in SEEDED), strict=True)),
        )
    ]


async def test_buckets_count_from_the_minute_of_since(
    make_jobs: MakeJobs, database: Database
) -> None:
    jobs = make_jobs()
    jobs.migrate_sync()
    start = (time.time() // HOUR - 5) * HOUR
    for minute, completed in ((0, 1), (1, 2), (2, 4), (3, 8), (4, 16), (5, 32)):
        database.sql(
            "INSERT INTO underway_counters (minute, queue, worker, completed) VALUES ("
            + ("to_timestamp(?)" if database.postgres else "?")
            + ", 'q', 'w', ?)",
            start + 60 * minute,
            completed,
        )

    def at(minute: int) -> datetime:
        return datetime.fromtimestamp(start + 60 * minute, UTC)

    # since halfway through minute 1: minute 0 is out, the buckets start at minute 1; until
    # halfway through minute 4: minute 4 starts before it and is in, minute 5 is not.
    rows = await jobs.job_counters(
        since=start + 90, until=start + 270, bucket=120, by=("worker", "queue")
    )
    assert rows == [
        MinuteCount(at(1), "q", "w", 2 + 4, 0, 0, 0, 0),
        MinuteCount(at(3), "q", "w", 8 + 16, 0, 0, 0, 0),
    ]
    rows = await jobs.job_counters(since=start + 59.999, until=start + 360, bucket=180, by=[])
    assert rows == [
        MinuteCount(at(0), None, None, 1 + 2 + 4, 0, 0, 0, 0),
        MinuteCount(at(3), None, None, 8 + 16 + 32, 0, 0, 0, 0),
    ]
    # A bucket longer than the range: one row, starting at the minute of since.
    whole = await jobs.job_counters(since=start + 130, until=start + 360, bucket=MAX_BUCKET)
    assert whole == [MinuteCount(at(2), "q", "w", 4 + 8 + 16 + 32, 0, 0, 0, 0)]
    assert await jobs.job_counters(since=start + 360, until=start + 720, bucket=600) == []


# -- upgrades: a database of the previous version, and its nodes ------------------------------

# What a node of the previous version runs to ack a completed job (its ack_completed.sql).
OLD_ACK = {
    "postgres": (
        "UPDATE underway_jobs AS j SET state = 'completed', completed_at = to_timestamp(a.at) "
        "FROM unnest(%(id)s::int8[], %(at)s::float8[], %(attempt)s::int4[]) AS a(id, at, attempt) "
        "WHERE j.id = ANY(%(id)s::int8[]) AND j.id = a.id AND j.state = 'executing' "
        "AND j.attempted_by = %(node)s AND j.attempt = a.attempt"
    ),
    "sqlite": (
        "UPDATE underway_jobs SET state = 'completed', completed_at = :at "
        "WHERE id = :id AND state = 'executing' AND attempted_by = :node AND attempt = :attempt"
    ),
}


def previous_version(database: Database) -> None:
    """The database as the previous version left it: migrations 0001 and 0002."""
    kind = "postgres" if database.postgres else "sqlite"
    older = [m for m in migrations(kind) if m.version < 3]
    if database.postgres:
        database.sql(f'CREATE SCHEMA "{database.schema}"')
    conn = database.connect()  # PostgreSQL: on the schema, whose creation it waited for
    try:
        for m in older:
            for statement in [m.sql] if database.postgres else split_statements(m.sql):
                conn.execute(statement)
        applied_at, now = ("timestamptz", "now()") if database.postgres else ("real", "0")
        conn.execute(
            "CREATE TABLE underway_migrations (version integer PRIMARY KEY, name text NOT NULL, "
            f"applied_at {applied_at} NOT NULL)"
        )
        for m in older:
            conn.execute(f"INSERT INTO underway_migrations VALUES ({m.version}, '{m.name}', {now})")
    finally:
        conn.close()


def old_ack(database: Database, job: Job[Any], node: str, at: float) -> int:
    """Ack ``job`` completed as a node of the previous version does; the rows changed."""
    params: dict[str, Any] = {"id": job.id, "at": at, "attempt": job.attempt, "node": node}
    if database.postgres:
        params = {**params, "id": [job.id], "at": [at], "attempt": [job.attempt]}
    conn = database.connect()
    try:
        return int(conn.execute(OLD_ACK[database.kind], params).rowcount)
    finally:
        conn.close()


async def test_an_upgrade_adds_the_counters_while_old_nodes_keep_working(
    make_jobs: MakeJobs, database: Database
) -> None:
    previous_version(database)
    jobs = make_jobs()
    worker = jobs.worker(name="w")(lambda job: None)

    assert jobs.migrate_sync() == ["0003_counters"]
    await jobs.enqueue_many([worker.new({}) for _ in range(3)])
    old_node, new_node = (
        await claim(jobs, "default", 2, "old"),
        await claim(jobs, "default", 1, "new"),
    )
    now = time.time()
    # A node of the previous version knows nothing of the counters: its acks still work.
    assert [old_ack(database, job, "old", now) for job in old_node] == [1, 1]
    await jobs.engine.ack([Ack(new_node[0].id, JobState.COMPLETED, now, 1)], "new")

    states = [(await jobs.get_job(j.id)) for j in (*old_node, *new_node)]
    assert [j.state if j else None for j in states] == [JobState.COMPLETED] * 3
    rows = await jobs.job_counters(since=now - 60)
    assert [(r.queue, r.worker, r.completed) for r in rows] == [("default", "w", 1)]


# -- plans: SQLite reads and prunes through the primary key ----------------------------------


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    ("name", "params", "search"),
    [
        (
            "job_counters",
            {"since": 0, "until": 60, "queues": None, "workers": None},
            "SEARCH underway_counters USING PRIMARY KEY (minute>? AND minute<?)",
        ),
        (
            "job_counters",
            {"since": 0, "until": 60, "queues": '["q"]', "workers": '["w"]'},
            "SEARCH underway_counters USING PRIMARY KEY (minute>? AND minute<?)",
        ),
        *(
            (
                "job_counter_sums",
                {
                    "since": 0,
                    "until": 3600,
                    "queues": queues,
                    "workers": None,
                    "bucket": 300,
                    "by_queue": True,
                    "by_worker": False,
                },
                "SEARCH underway_counters USING PRIMARY KEY (minute>? AND minute<?)",
            )
            for queues in (None, '["q"]')
        ),
        (
            "prune_counters",
            {"before": 60, "limit": 10},
            "SEARCH underway_counters USING PRIMARY KEY (minute<?)",
        ),
    ],
)
async def test_sqlite_reads_and_prunes_counters_through_the_primary_key(
    make_jobs: MakeJobs, database: Database, name: str, params: dict[str, Any], search: str
) -> None:
    make_jobs().migrate_sync()
    conn = sqlite3.connect(database.path or "")
    try:
        plan = conn.execute(f"EXPLAIN QUERY PLAN {query('sqlite', name)}", params).fetchall()
    finally:
        conn.close()
    steps = [row[3] for row in plan]
    assert search in steps, steps
    assert not [s for s in steps if s.startswith("SCAN underway_counters")], steps
