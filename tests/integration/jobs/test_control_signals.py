"""Queue control and cancellation reach every node, not only the one that asked."""

from __future__ import annotations

import asyncio
from typing import Any

from underway.jobs import Job, Jobs, JobState

from ..conftest import MakeJobs, wait_for_state, wait_until


async def test_pause_resume_and_scale_from_one_node_reach_another(make_jobs: MakeJobs) -> None:
    a = make_jobs(node_name="node-a", queues={"default": 1})
    b = make_jobs(node_name="node-b", queues={"default": 1})
    for app in (a, b):

        @app.worker(name="signals.work")
        async def work(job: Job[Any]) -> None:
            await asyncio.sleep(0.05)

    async with a, b:
        producer = b.node.producers["default"]  # type: ignore[union-attr]
        await a.pause_queue("default")
        await wait_until(lambda: producer.paused, timeout=3.0, message="node-b paused")
        await a.scale_queue("default", 3)
        await wait_until(lambda: producer.limit == 3, timeout=3.0, message="node-b scaled")
        await a.resume_queue("default")
        await wait_until(lambda: not producer.paused, timeout=3.0, message="node-b resumed")
        job = await a.workers["signals.work"].enqueue({})
        await wait_for_state(a, job.id)


async def test_local_only_control_leaves_other_nodes_alone(make_jobs: MakeJobs) -> None:
    a = make_jobs(node_name="node-a")
    b = make_jobs(node_name="node-b")
    async with a, b:
        await a.pause_queue("default", local_only=True)
        await asyncio.sleep(0.5)
        assert a.node.producers["default"].paused  # type: ignore[union-attr]
        assert not b.node.producers["default"].paused  # type: ignore[union-attr]


async def test_cancel_from_one_node_interrupts_the_job_running_on_another(
    make_jobs: MakeJobs,
) -> None:
    a = make_jobs(node_name="node-a", queues={"other": 1})  # runs no "default" jobs
    b = make_jobs(node_name="node-b")
    started, interrupted = _long_worker("signals.long", a, b)

    async with a, b:
        job = await a.workers["signals.long"].enqueue({})
        await asyncio.wait_for(started.wait(), 5.0)
        cancelled = await a.cancel_job(job.id)
        assert cancelled is not None
        assert cancelled.state is JobState.CANCELLED
        await asyncio.wait_for(interrupted.wait(), 5.0)
        assert (await wait_for_state(a, job.id)).state is JobState.CANCELLED


async def test_cancel_from_sync_code_without_a_node_interrupts_the_running_job(
    make_jobs: MakeJobs,
) -> None:
    """``cancel_job_sync`` in a web app (no node) reaches the node that runs the job."""
    web = make_jobs(node_name="web")  # never started: enqueues and cancels only
    node = make_jobs(node_name="node-b")
    started, interrupted = _long_worker("signals.long_sync_cancel", web, node)

    async with node:
        job = await web.workers["signals.long_sync_cancel"].enqueue({})
        await asyncio.wait_for(started.wait(), 5.0)
        cancelled = await asyncio.to_thread(web.cancel_job_sync, job.id)
        assert cancelled is not None
        assert cancelled.state is JobState.CANCELLED
        await asyncio.wait_for(interrupted.wait(), 10.0)


def _long_worker(name: str, *apps: Jobs) -> tuple[asyncio.Event, asyncio.Event]:
    """Register on each app a worker ``name`` that runs 30 s unless interrupted.

    Returns:
        Events set when a run starts and when a run is interrupted.
    """
    started, interrupted = asyncio.Event(), asyncio.Event()

    async def long(job: Job[Any]) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            interrupted.set()
            raise

    for app in apps:
        app.worker(name=name)(long)
    return started, interrupted
