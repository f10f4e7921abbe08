"""SIGTERM to a node process: running jobs finish within the grace, or go back to their queue."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance._procs import Processes, finished, processes, query, started, state_counts
from tests.acceptance.nodeapp import RECORD, client

pytestmark = pytest.mark.acceptance


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    yield from processes(tmp_path)


def _enqueue(procs: Processes, *args: dict[str, Any]) -> list[int]:
    with client(procs.base) as jobs:
        record = jobs.workers[RECORD]
        return [j.id for j in jobs.enqueue_many_sync([record.new(a) for a in args])]


def _rows(procs: Processes) -> dict[int, tuple[Any, ...]]:
    rows = query(procs.db, "SELECT id, state, attempt, attempted_by FROM underway_jobs")
    return {row[0]: row[1:] for row in rows}


def _started(procs: Processes) -> list[int]:
    return [e.job_id for e in procs.events() if e.kind == "start"]


def test_sigterm_lets_running_jobs_finish_within_the_grace(procs: Processes) -> None:
    grace, duration = 5.0, 1.0
    ids = _enqueue(procs, *({"n": n, "seconds": duration} for n in range(5)))
    node = procs.start_node("node-a", grace=grace, queues="default=3")
    procs.wait_for(lambda: len(_started(procs)) >= 3, timeout=20, what="three jobs to start")

    signalled = time.time()
    assert procs.stop(node) == 0
    took = time.time() - signalled

    events = procs.events()
    running = _started(procs)
    assert 3 <= len(running) < len(ids), f"started before the node stopped: {running}"
    assert all(len(finished(events, i)) == 1 for i in running)
    assert any(e.at > signalled for e in events if e.kind == "finish"), "nothing was running"
    assert took < grace, f"waited {took:.2f}s although the jobs were done sooner"
    rows = _rows(procs)
    assert {i: rows[i] for i in running} == dict.fromkeys(running, ("completed", 1, "node-a"))
    waiting = sorted(set(ids) - set(running))
    assert {i: rows[i] for i in waiting} == dict.fromkeys(waiting, ("available", 0, None))
    assert "executing" not in state_counts(procs.db)
    assert query(procs.db, "SELECT name FROM underway_nodes") == []


def test_a_job_longer_than_the_grace_is_handed_back_and_completed_later(
    procs: Processes,
) -> None:
    grace = 0.5
    (job_id,) = _enqueue(procs, {"seconds": {"node-a": 60.0, "*": 0.05}})
    node_a = procs.start_node("node-a", grace=grace)
    procs.wait_for(lambda: started(procs.events(), job_id), timeout=20, what="the job to start")

    signalled = time.time()
    assert procs.stop(node_a) == 0
    assert time.time() - signalled < grace + 4.0, "the node did not stop promptly"
    assert finished(procs.events(), job_id) == []
    assert _rows(procs) == {job_id: ("available", 0, None)}

    node_b = procs.start_node("node-b", grace=grace)
    procs.wait_for(
        lambda: _rows(procs)[job_id][0] == "completed",
        timeout=20,
        what="a later node to complete the job",
    )
    events = procs.events()
    assert [(e.node, e.attempt) for e in started(events, job_id)] == [("node-a", 1), ("node-b", 1)]
    assert [(e.node, e.attempt) for e in finished(events, job_id)] == [("node-b", 1)]
    assert _rows(procs) == {job_id: ("completed", 1, "node-b")}
    with client(procs.base) as jobs:
        job = jobs.get_job_sync(job_id)
    assert job is not None
    assert job.errors == ()
    assert procs.stop(node_b) == 0


def test_a_second_signal_cancels_running_jobs_at_once(procs: Processes) -> None:
    grace = 60.0
    (job_id,) = _enqueue(procs, {"seconds": {"node-a": 120.0, "*": 0.05}})
    node = procs.start_node("node-a", grace=grace)
    procs.wait_for(lambda: started(procs.events(), job_id), timeout=20, what="the job to start")

    node.send_signal(signal.SIGTERM)
    time.sleep(0.5)  # the node is now waiting for the job, up to the grace
    assert node.poll() is None
    node.send_signal(signal.SIGINT)
    assert node.wait(timeout=30) == 0  # far less than the 60 s grace
    assert finished(procs.events(), job_id) == []
    assert _rows(procs) == {job_id: ("available", 0, None)}
    assert query(procs.db, "SELECT name FROM underway_nodes") == []
