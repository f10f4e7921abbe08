"""A node claims only jobs of its own workers; jobs no live node can run wait, reported."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from underway import _telemetry as telemetry
from underway.jobs import Job, JobState
from underway.jobs.job import JobSpec

from ..conftest import MakeJobs, wait_for_state, wait_until


def _spec(worker: str) -> JobSpec:
    return JobSpec(worker=worker, queue="default", args={}, args_json=json.dumps({}))


async def test_a_job_of_a_worker_no_node_has_waits_and_is_reported(make_jobs: MakeJobs) -> None:
    jobs = make_jobs(node_name="node-w", heartbeat_interval=0.2, rescue_after=1.0)
    reports: list[Mapping[str, Any]] = []

    def on_event(event: str, measures: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        reports.append({**meta, **measures})

    @jobs.worker
    async def known(job: Job[Any]) -> None:
        return None

    await jobs.engine.open()
    (ghost,) = await jobs.engine.insert([_spec("gone.worker")])
    mine = await known.enqueue({})
    token = telemetry.attach(on_event, prefix="jobs.unclaimable")
    try:
        async with jobs:
            await wait_for_state(jobs, mine.id, timeout=10.0)
            await wait_until(lambda: reports, 15.0, message="a report of the waiting job")
            stuck = await jobs.get_job(ghost.id)
    finally:
        telemetry.detach(token)
    assert reports[0]["queue"] == "default"
    assert reports[0]["worker"] == "gone.worker"
    assert reports[0]["count"] == 1
    assert stuck is not None
    assert (stuck.state, stuck.attempt, stuck.errors) == (JobState.AVAILABLE, 0, ())


async def test_fetch_takes_only_the_given_workers(make_jobs: MakeJobs) -> None:
    jobs = make_jobs()
    await jobs.engine.open()
    a, b, c = await jobs.engine.insert([_spec("w.a"), _spec("w.b"), _spec("w.a")])
    now = time.time()

    none = await jobs.engine.fetch("default", 10, "n", now, workers=["w.other"])
    only_b = await jobs.engine.fetch("default", 10, "n", now, workers=["w.b", "w.x"])
    rest = await jobs.engine.fetch("default", 10, "n", now)

    assert none == []
    assert [j.id for j in only_b] == [b.id]
    assert sorted(j.id for j in rest) == [a.id, c.id]


async def test_live_nodes_and_the_head_of_each_queue(make_jobs: MakeJobs) -> None:
    jobs = make_jobs()
    engine = jobs.engine
    await engine.open()
    await engine.insert([_spec("w.a"), _spec("w.b"), _spec("w.a")])
    now = time.time()
    await engine.heartbeat("n1", now, {"queues": {"default": 1}, "workers": ["w.a"]})

    live = await engine.live_nodes(now - 60, now)
    head = await engine.available_sample(["default", "empty"], 2)
    whole = await engine.available_sample(["default"], 1000)

    assert live == {"n1": {"queues": {"default": 1}, "workers": ["w.a"]}}
    assert head == {("default", "w.a"): 1, ("default", "w.b"): 1}
    assert whole == {("default", "w.a"): 2, ("default", "w.b"): 1}
