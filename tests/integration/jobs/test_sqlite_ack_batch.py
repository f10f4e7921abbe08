"""SQLite acks: completed attempts are written in one statement, each checked on its own."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

from underway.jobs.engines._sql import query
from underway.jobs.engines.sqlite import SQLiteEngine
from underway.jobs.job import JobSpec, JobState
from underway.jobs.outcomes import Ack

QUEUE = "acks"


def spec(i: int) -> JobSpec:
    return JobSpec(worker="tests.acks", queue=QUEUE, args={"i": i}, args_json=f'{{"i":{i}}}')


async def test_a_batch_of_acks_records_each_one_that_still_holds_its_claim(
    sqlite_engines: Callable[[str], SQLiteEngine], raw_db: Callable[[], sqlite3.Connection]
) -> None:
    engine = sqlite_engines("")
    await engine.open()
    await engine.insert([spec(i) for i in range(6)])
    now = time.time()
    claimed = await engine.fetch(QUEUE, 6, "n", now)
    done, unicode, stale, other_node, failed, snoozed = claimed
    at = now + 0.123456

    await engine.ack(
        [
            Ack(done.id, JobState.COMPLETED, at, done.attempt),
            Ack(unicode.id, JobState.COMPLETED, at, unicode.attempt, result='{"é":"✓ \\""}'),
            Ack(stale.id, JobState.COMPLETED, at, stale.attempt + 1),  # a newer claim's
            Ack(failed.id, JobState.DISCARDED, at, failed.attempt, error="boom"),
            Ack(
                snoozed.id,
                JobState.SCHEDULED,
                at,
                snoozed.attempt,
                scheduled_at=at + 60,
                snoozed=True,
            ),
        ],
        "n",
    )
    await engine.ack([Ack(other_node.id, JobState.COMPLETED, at, other_node.attempt)], "m")

    rows = {
        row[0]: row[1:]
        for row in raw_db().execute("SELECT id, state, completed_at, result FROM underway_jobs")
    }
    assert rows[done.id] == ("completed", at, None)
    assert rows[unicode.id] == ("completed", at, '{"é":"✓ \\""}')
    assert rows[stale.id] == ("executing", None, None)
    assert rows[other_node.id] == ("executing", None, None)
    assert rows[failed.id][0] == "discarded"
    assert rows[snoozed.id][0] == "scheduled"


async def test_acks_of_many_completed_jobs_find_each_by_its_id(
    sqlite_engines: Callable[[str], SQLiteEngine], raw_db: Callable[[], sqlite3.Connection]
) -> None:
    engine = sqlite_engines("")
    await engine.open()
    await engine.insert([spec(i) for i in range(2_000)])
    claimed = await engine.fetch(QUEUE, 2_000, "n", time.time())
    acks = [Ack(j.id, JobState.COMPLETED, time.time(), j.attempt) for j in claimed[::2]]

    await engine.ack(acks, "n")

    conn = raw_db()
    counts = dict(conn.execute("SELECT state, COUNT(*) FROM underway_jobs GROUP BY state"))
    assert counts == {"completed": 1_000, "executing": 1_000}
    plan = conn.execute(
        f"EXPLAIN QUERY PLAN {query('sqlite', 'ack_completed')}", {"acks": "[]", "node": "n"}
    ).fetchall()
    steps = [row[3] for row in plan]
    assert steps[0].startswith("SCAN json_each"), steps  # the acks drive the join
    assert "SEARCH underway_jobs USING INTEGER PRIMARY KEY (rowid=?)" in steps, steps
