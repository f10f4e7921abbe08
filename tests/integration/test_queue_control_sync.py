"""``pause_queue_sync``, ``resume_queue_sync`` and ``scale_queue_sync`` from synchronous code."""

from __future__ import annotations

import asyncio

import pytest

from underway.errors import ConfigError

from .conftest import MakeJobs, wait_until


async def test_sync_twins_in_a_process_that_runs_the_node_apply_at_once(
    make_jobs: MakeJobs,
) -> None:
    jobs = make_jobs(node_name="node-a", queues={"default": 1})
    async with jobs:
        producer = jobs.node.producers["default"]  # type: ignore[union-attr]
        await asyncio.to_thread(jobs.pause_queue_sync, "default", local_only=True)
        assert producer.paused
        await asyncio.to_thread(jobs.scale_queue_sync, "default", 3, local_only=True)
        assert producer.limit == 3
        await asyncio.to_thread(jobs.resume_queue_sync, "default", local_only=True)
        assert not producer.paused
        with pytest.raises(ConfigError, match="queue 'mail' does not run on this node"):
            await asyncio.to_thread(jobs.pause_queue_sync, "mail", local_only=True)


async def test_sync_twins_without_a_node_reach_the_nodes_of_other_processes(
    make_jobs: MakeJobs,
) -> None:
    node = make_jobs(node_name="node-b", queues={"default": 1})
    client = make_jobs(node_name="client")  # never started, as in a web app or a script
    async with node:
        producer = node.node.producers["default"]  # type: ignore[union-attr]
        await asyncio.to_thread(client.pause_queue_sync, "default")
        await wait_until(lambda: producer.paused, timeout=10.0, message="node-b paused")
        await asyncio.to_thread(client.scale_queue_sync, "default", 4)
        await wait_until(lambda: producer.limit == 4, timeout=10.0, message="node-b scaled")
        await asyncio.to_thread(client.resume_queue_sync, "default")
        await wait_until(lambda: not producer.paused, timeout=10.0, message="node-b resumed")
    assert client.node is None


async def test_sync_twins_reject_bad_input_and_a_running_event_loop(make_jobs: MakeJobs) -> None:
    client = make_jobs()
    with pytest.raises(ConfigError, match="limit of queue 'default' must be an int >= 1"):
        await asyncio.to_thread(client.scale_queue_sync, "default", 0)
    with pytest.raises(ConfigError, match="queue name must be"):
        await asyncio.to_thread(client.pause_queue_sync, "no spaces")
    with pytest.raises(ConfigError, match="no node is running in this process"):
        await asyncio.to_thread(client.resume_queue_sync, "default", local_only=True)
    with pytest.raises(RuntimeError, match=r"use await jobs.pause_queue\(\)"):
        client.pause_queue_sync("default")
