"""A node's components against an engine in memory: started in order, stopped in reverse."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from underway.jobs import Job, Jobs, JobState
from underway.jobs._runtime.node import Node
from underway.jobs.config import NodeConfig

from .memory_engine import MemoryEngine, wait_until

WAIT = 10.0


def _app(started: list[int], go: dict[int, asyncio.Event], thread_go: threading.Event) -> Jobs:
    app = Jobs("sqlite:///:memory:")

    @app.worker(name="w")
    async def gated(job: Job[Any]) -> None:
        started.append(job.id)
        await go.setdefault(job.id, asyncio.Event()).wait()

    @app.worker(name="sync")
    def blocking(job: Job[Any]) -> None:
        started.append(job.id)
        thread_go.wait(WAIT)

    return app


def _node(engine: MemoryEngine, app: Jobs) -> Node:
    config = NodeConfig(queues={"default": 2}, name="n", shutdown_grace=60.0, prune=None)
    return Node(engine, app.workers, config)


def _runtime_tasks() -> list[str]:
    return sorted(t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("underway."))


async def test_a_node_heartbeats_before_it_claims_and_stops_in_reverse_order() -> None:
    engine = MemoryEngine()
    started: list[int] = []
    go: dict[int, asyncio.Event] = {}
    node = _node(engine, _app(started, go, threading.Event()))
    done, cut = engine.add(), engine.add()
    await node.start()
    assert engine.calls[:2] == ["open", "heartbeat"]
    await wait_until(lambda: len(started) == 2, "both jobs to start")
    assert engine.calls.index("heartbeat") < engine.calls.index("fetch")
    engine.ack_gate = writes = asyncio.Event()  # the done job's ack is still being written
    go.setdefault(done, asyncio.Event()).set()
    await wait_until(lambda: engine.ack_calls == 1, "the ack write to begin")

    node.hurry()  # no grace: the job still running is cancelled and handed back
    stopping = asyncio.create_task(node.stop())
    await wait_until(lambda: "release_lease" in engine.calls, "the stop to reach the acker")
    assert "forget_node" not in engine.calls, "the heartbeat stays until the acks are written"
    assert "underway.heartbeat" in _runtime_tasks(), "and the node goes on heartbeating"
    writes.set()
    assert await asyncio.wait_for(stopping, WAIT) == 0
    assert engine.state(done) is JobState.COMPLETED
    assert engine.state(cut) is JobState.AVAILABLE
    assert engine.released == [(cut, 1)]
    calls = engine.calls
    last_fetch = max(i for i, c in enumerate(calls) if c == "fetch")
    release, forget = calls.index("release"), calls.index("forget_node")
    assert last_fetch < release < calls.index("release_lease") < calls.index("ack") < forget
    assert _runtime_tasks() == [], "every component's task has ended"


async def test_a_node_that_leaves_a_thread_running_keeps_its_heartbeat_row() -> None:
    engine = MemoryEngine()
    started: list[int] = []
    thread_go = threading.Event()
    node = _node(engine, _app(started, {}, thread_go))
    job_id = engine.add(worker="sync")
    await node.start()
    await wait_until(lambda: started == [job_id], "the sync job to start")
    try:
        assert await asyncio.wait_for(node.stop(0, wait_for_threads=False), WAIT) == 1
    finally:
        thread_go.set()
    assert "forget_node" not in engine.calls, "other nodes rescue it once the heartbeat expires"
    assert engine.released == []
    assert engine.state(job_id) is JobState.EXECUTING
    assert _runtime_tasks() == [f"underway.job.default.{job_id}"], "only the job's task is left"
    await wait_until(lambda: not _runtime_tasks(), "the job's task to end with its thread")
