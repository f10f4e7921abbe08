"""``pause_queue_sync``, ``resume_queue_sync`` and ``scale_queue_sync`` from synchronous code."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest

from underway.errors import ConfigError
from underway.jobs import Jobs, app

from ..conftest import MakeJobs, wait_until


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


async def test_sync_twins_without_a_node_publish_through_the_apps_own_engine(
    make_jobs: MakeJobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = make_jobs(node_name="node-c", queues={"default": 1})
    client = make_jobs(node_name="client")

    def no_new_engine(database: str) -> None:
        raise AssertionError(f"a new engine was opened on {database} for one signal")

    monkeypatch.setattr(app, "open_engine", no_new_engine)
    async with node:
        producer = node.node.producers["default"]  # type: ignore[union-attr]
        for _ in range(3):  # one engine (one pool on PostgreSQL) serves every call
            await asyncio.to_thread(client.pause_queue_sync, "default")
            await wait_until(lambda: producer.paused, timeout=10.0, message="node-c paused")
            await asyncio.to_thread(client.resume_queue_sync, "default")
            await wait_until(lambda: not producer.paused, timeout=10.0, message="resumed")


async def test_publish_sync_reaches_every_engine_on_the_database(make_jobs: MakeJobs) -> None:
    reader, writer = make_jobs().engine, make_jobs().engine
    await reader.open()
    assert await reader.signals() == []  # the first read marks where to start
    await asyncio.to_thread(writer.publish_sync, {"action": "pause", "queue": "q"})
    await asyncio.to_thread(writer.publish_sync, {"action": "resume", "queue": "q"})

    async def seen() -> list[dict[str, str]]:
        found.extend(await reader.signals())
        return found

    found: list[dict[str, str]] = []
    await wait_until(lambda: len(found) >= 2 or seen(), timeout=10.0, message="the signals")
    assert found == [{"action": "pause", "queue": "q"}, {"action": "resume", "queue": "q"}]


@contextmanager
def _node_on_own_loop(jobs: Jobs) -> Iterator[asyncio.AbstractEventLoop]:
    """``jobs`` started on an event loop of this thread that is not running afterwards."""
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(jobs.start())
        yield loop
    finally:
        loop.run_until_complete(jobs.stop())
        loop.close()


async def test_local_only_refuses_a_node_whose_loop_no_longer_runs(make_jobs: MakeJobs) -> None:
    jobs = make_jobs(node_name="node-d", queues={"default": 1})

    def scenario() -> None:
        with _node_on_own_loop(jobs):
            assert jobs.node is not None  # the node object is still there, but nothing runs it:
            with pytest.raises(ConfigError, match="node of this process is not running"):
                jobs.pause_queue_sync("default", local_only=True)  # (was sent to every node)
            assert not jobs.node.producers["default"].paused

    await asyncio.to_thread(scenario)


def _hold_loop(
    loop: asyncio.AbstractEventLoop, held: threading.Event, release: threading.Event
) -> Callable[[], None]:
    def run() -> None:
        def hold() -> None:
            held.set()
            release.wait()
            loop.stop()

        loop.call_soon(hold)
        loop.run_forever()

    return run


async def test_a_blocked_node_loop_makes_the_call_time_out_instead_of_hanging(
    make_jobs: MakeJobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app, "_CONTROL_TIMEOUT", 0.05)
    jobs = make_jobs(node_name="node-f", queues={"default": 1})

    def scenario() -> None:
        held, release = threading.Event(), threading.Event()
        with ThreadPoolExecutor(2) as pool, _node_on_own_loop(jobs) as loop:
            blocked = pool.submit(_hold_loop(loop, held, release))  # running, and stuck
            try:
                assert held.wait(10)
                call = pool.submit(jobs.pause_queue_sync, "default", local_only=True)
                with pytest.raises(TimeoutError, match=r"pause_queue_sync\(\): the node's event"):
                    call.result(timeout=10)  # (before the fix: blocked for ever)
            finally:  # the loop runs again, and the node stops, before the pool is joined
                release.set()
                blocked.result(timeout=20)
            assert not jobs.node.producers["default"].paused  # type: ignore[union-attr]

    await asyncio.to_thread(scenario)
