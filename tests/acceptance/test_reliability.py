"""Node processes on one SQLite file: kill -9, rescue, long jobs, many jobs, worker sets.

Each test runs real node processes (``python -m tests.acceptance.nodeapp node``) and reads
what happened from the jobs table and from the execution logs the jobs write themselves.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance._procs import (
    Processes,
    finished,
    kill9,
    node_alive,
    processes,
    query,
    started,
    state_counts,
)
from tests.acceptance.nodeapp import RECORD, client
from underway.jobs import Job, JobState

pytestmark = pytest.mark.acceptance


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    yield from processes(tmp_path)


def _job(procs: Processes, job_id: int) -> Job[Any]:
    with client(procs.base) as jobs:
        job = jobs.get_job_sync(job_id)
    assert job is not None, f"job {job_id} is gone"
    return job


def _in_state(procs: Processes, job_id: int, state: str) -> bool:
    rows = query(procs.db, "SELECT state FROM underway_jobs WHERE id = ?", (job_id,))
    return bool(rows) and rows[0][0] == state


def _enqueue(procs: Processes, *args: dict[str, Any]) -> list[int]:
    with client(procs.base) as jobs:
        record = jobs.workers[RECORD]
        return [j.id for j in jobs.enqueue_many_sync([record.new(a) for a in args])]


@pytest.mark.slow
def test_kill9_mid_job_is_rescued_only_after_the_heartbeat_expires(procs: Processes) -> None:
    rescue_after = 1.5
    (job_id,) = _enqueue(procs, {"seconds": {"node-a": 60.0, "*": 0.05}})
    node_a = procs.start_node("node-a", rescue_after=rescue_after)
    procs.wait_for(lambda: started(procs.events(), job_id), timeout=20, what="node-a to start")
    node_b = procs.start_node("node-b", rescue_after=rescue_after)

    kill9(node_a)
    beats = query(procs.db, "SELECT heartbeat_at FROM underway_nodes WHERE name = 'node-a'")
    assert beats, "node-a's heartbeat was dropped while it was alive"
    expires = beats[0][0] + rescue_after

    procs.wait_for(
        lambda: _in_state(procs, job_id, "completed"),
        timeout=20,
        what="the rescued job to complete",
    )
    events = procs.events()
    starts, finishes = started(events, job_id), finished(events, job_id)
    assert [(e.node, e.attempt) for e in starts] == [("node-a", 1), ("node-b", 2)]
    assert starts[1].at >= expires, (
        f"re-run {expires - starts[1].at:.3f}s before node-a's heartbeat expired"
    )
    assert [(e.node, e.attempt) for e in finishes] == [("node-b", 2)]

    job = _job(procs, job_id)
    assert job.state is JobState.COMPLETED
    assert job.attempt == 2
    assert job.attempted_by == "node-b"
    assert len(job.errors) == 1
    assert job.errors[0].attempt == 1
    assert "rescued" in job.errors[0].error
    assert "node-a" in job.errors[0].error
    assert job.errors[0].at.timestamp() >= expires
    assert query(procs.db, "SELECT COUNT(*) FROM underway_jobs") == [(1,)]
    assert procs.stop(node_b) == 0


@pytest.mark.slow
def test_a_long_job_on_a_live_node_is_never_rescued(procs: Processes) -> None:
    rescue_after, duration = 1.0, 3.0
    node_a = procs.start_node("node-a", rescue_after=rescue_after, queues="default=2")
    node_b = procs.start_node("node-b", rescue_after=rescue_after, queues="other=2")
    (job_id,) = _enqueue(procs, {"seconds": duration})

    procs.wait_for(
        lambda: _in_state(procs, job_id, "completed"), timeout=20, what="the long job to complete"
    )
    events = procs.events()
    starts, finishes = started(events, job_id), finished(events, job_id)
    assert [(e.node, e.attempt) for e in starts] == [("node-a", 1)]
    assert [(e.node, e.attempt) for e in finishes] == [("node-a", 1)]
    assert finishes[0].at - starts[0].at >= duration > 2 * rescue_after

    job = _job(procs, job_id)
    assert job.attempt == 1
    assert job.errors == ()
    assert procs.stop(node_a) == 0
    assert procs.stop(node_b) == 0


def test_two_nodes_share_2000_jobs_without_losing_or_repeating_any(procs: Processes) -> None:
    total, batch = 2000, 500
    nodes = {
        name: procs.start_node(name, queues="default=20", wait=False)
        for name in ("node-a", "node-b")
    }
    procs.wait_for(
        lambda: all(node_alive(procs.db, n) for n in nodes), timeout=20, what="both nodes to start"
    )

    ids: list[int] = []
    for first in range(0, total, batch):
        ids += _enqueue(procs, *({"n": n, "seconds": 0.01} for n in range(first, first + batch)))
    assert len(set(ids)) == total

    procs.wait_for(
        lambda: state_counts(procs.db)["completed"] == total,
        timeout=60,
        what=f"{total} jobs to complete",
    )
    for proc in nodes.values():
        assert procs.stop(proc) == 0

    assert state_counts(procs.db) == Counter({"completed": total})
    events = procs.events()
    starts = Counter(e.job_id for e in events if e.kind == "start")
    finishes = Counter(e.job_id for e in events if e.kind == "finish")
    assert set(starts) == set(ids), "some jobs never ran"
    assert [i for i, n in starts.items() if n > 1] == [], "some jobs ran twice"
    assert finishes == starts
    per_node = Counter(e.node for e in events if e.kind == "start")
    assert set(per_node) == set(nodes), f"work per node: {dict(per_node)}"
    assert all(n > 0 for n in per_node.values()), f"work per node: {dict(per_node)}"


def _insert_raw(db: Path, worker: str) -> int:
    now = time.time()
    with closing(sqlite3.connect(db, timeout=10.0)) as conn, conn:
        cursor = conn.execute(
            "INSERT INTO underway_jobs (queue, worker, inserted_at, scheduled_at) "
            "VALUES ('default', ?, ?, ?)",
            (worker, now, now),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid


ONLY_B = "acceptance.only_b"


def test_nodes_with_different_workers_discard_nothing(procs: Processes) -> None:
    """A rolling deploy that adds a worker: old nodes leave the new worker's jobs alone."""
    with client(replace(procs.base, extra_workers=ONLY_B)) as jobs:
        only_b = jobs.workers[ONLY_B]
        new = [j.id for j in jobs.enqueue_many_sync([only_b.new({"i": i}) for i in range(20)])]
    common = _enqueue(procs, *({"n": n} for n in range(20)))
    nobody = _insert_raw(procs.db, "no.such.worker")

    node_a = procs.start_node("node-a")
    procs.wait_for(
        lambda: all(_in_state(procs, i, "completed") for i in common),
        timeout=30,
        what="node-a to run the jobs of its worker",
    )
    # node-a runs its queue empty of what it can run, and keeps polling meanwhile.
    time.sleep(0.5)
    assert state_counts(procs.db)["discarded"] == 0
    assert all(_in_state(procs, i, "available") for i in [*new, nobody])

    node_b = procs.start_node("node-b", extra_workers=ONLY_B)
    procs.wait_for(
        lambda: all(_in_state(procs, i, "completed") for i in new),
        timeout=30,
        what="node-b to run the jobs only it has the worker for",
    )
    ran_on = {e.job_id: e.node for e in procs.events() if e.kind == "start"}
    assert {ran_on[i] for i in new} == {"node-b"}
    assert state_counts(procs.db) == Counter({"completed": 40, "available": 1})
    stuck = _job(procs, nobody)
    assert (stuck.state, stuck.attempt, stuck.errors) == (JobState.AVAILABLE, 0, ())

    node_c = procs.start_node("node-c", extra_workers="no.such.worker")
    procs.wait_for(
        lambda: _in_state(procs, nobody, "completed"),
        timeout=30,
        what="the job to run once a node that has its worker starts",
    )
    for node in (node_a, node_b, node_c):
        assert procs.stop(node) == 0
