"""Lanes: sync bodies run in borrowed threads, and results come back to the event loop."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from underway.jobs._runtime.lanes import Lanes

WAIT = 10.0  # generous bound for a thread to reach a point; never reached when things work


async def test_results_and_exceptions_come_back_after_the_after_hook(
    pool: ThreadPoolExecutor,
) -> None:
    lanes = Lanes(pool)
    seen: list[str] = []

    def fail(exc: BaseException) -> Any:
        raise exc

    assert await lanes.run(lambda: 42, lambda: seen.append("a")) == 42
    with pytest.raises(ValueError, match="bad"):
        await lanes.run(lambda: fail(ValueError("bad")), lambda: seen.append("b"))
    # exceptions that an asyncio future refuses or that end a task are carried too (a
    # StopIteration leaves a coroutine as a RuntimeError, as it would from an async body)
    with pytest.raises(RuntimeError, match="StopIteration"):
        await lanes.run(lambda: fail(StopIteration()), lambda: seen.append("c"))
    with pytest.raises(SystemExit):
        await lanes.run(lambda: fail(SystemExit(3)), lambda: seen.append("d"))
    assert seen == ["a", "b", "c", "d"]


async def test_bodies_run_off_the_event_loop_thread(pool: ThreadPoolExecutor) -> None:
    lanes = Lanes(pool)
    names = await asyncio.gather(
        *(lanes.run(lambda: threading.current_thread().name, lambda: None) for _ in range(20))
    )
    assert all(name.startswith("test-threads") for name in names)


async def test_a_body_queued_behind_a_blocked_one_gets_a_thread_of_its_own(
    pool: ThreadPoolExecutor,
) -> None:
    lanes = Lanes(pool, handoff=0.001)
    released = threading.Event()

    def blocked() -> bool:
        return released.wait(WAIT)  # only the second body can release it

    first = asyncio.ensure_future(lanes.run(blocked, lambda: None))
    second = asyncio.ensure_future(lanes.run(released.set, lambda: None))
    assert await first is True
    await second


async def test_many_blocking_bodies_all_run_at_once(pool: ThreadPoolExecutor) -> None:
    lanes = Lanes(pool)
    n = 12
    barrier = threading.Barrier(n, timeout=WAIT)
    await asyncio.gather(*(lanes.run(barrier.wait, lambda: None) for _ in range(n)))


async def test_cancelling_the_waiter_leaves_the_body_running_to_its_end(
    pool: ThreadPoolExecutor,
) -> None:
    lanes = Lanes(pool)
    started, go_on, after_ran = threading.Event(), threading.Event(), threading.Event()

    def body() -> str:
        started.set()
        go_on.wait(WAIT)
        return "finished"

    waiter = asyncio.ensure_future(lanes.run(body, after_ran.set))
    assert await asyncio.to_thread(started.wait, WAIT)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert not after_ran.is_set()
    go_on.set()
    assert await asyncio.to_thread(after_ran.wait, WAIT)
    # the lane goes on serving bodies after a cancelled waiter
    assert await lanes.run(lambda: "next", lambda: None) == "next"


async def test_idle_lanes_give_their_threads_back(pool: ThreadPoolExecutor) -> None:
    lanes = Lanes(pool, linger=0.01)
    await asyncio.gather(*(lanes.run(lambda: None, lambda: None) for _ in range(10)))
    # shutdown(wait=True) returns only once every lane has left its thread
    await asyncio.to_thread(pool.shutdown, wait=True)
    assert lanes.counts == {"idle": 0, "looking": 0, "running": 0, "queued": 0}


async def test_a_shut_down_pool_fails_the_body_and_still_runs_the_after_hook() -> None:
    pool = ThreadPoolExecutor(2)
    pool.shutdown(wait=True)
    lanes = Lanes(pool)
    after_ran: list[bool] = []
    with pytest.raises(RuntimeError, match="shutdown"):
        await lanes.run(lambda: "never", lambda: after_ran.append(True))
    assert after_ran == [True]
    assert lanes.counts["queued"] == 0


async def test_bodies_queued_when_the_pool_shuts_down_run_on_the_lane_left() -> None:
    pool = ThreadPoolExecutor(1)
    lanes = Lanes(pool, handoff=0.001, linger=0.01)
    released = threading.Event()
    first = asyncio.ensure_future(lanes.run(lambda: released.wait(WAIT), lambda: None))
    others = [asyncio.ensure_future(lanes.run(lambda: "ran", lambda: None)) for _ in range(2)]
    await asyncio.sleep(0)  # all queued: one lane borrowed for them
    pool.shutdown(wait=False)
    while lanes.counts["running"] == 0:
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.01)  # the hand-off finds no thread to borrow for the others
    released.set()
    assert await first is True
    assert await asyncio.gather(*others) == ["ran", "ran"]
    await asyncio.to_thread(pool.shutdown, wait=True)
    assert lanes.counts == {"idle": 0, "looking": 0, "running": 0, "queued": 0}
