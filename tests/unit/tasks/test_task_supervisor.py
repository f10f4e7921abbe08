"""TaskSupervisor: owned fire-and-forget tasks, awaitable handles, limits and shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Iterator, Mapping
from typing import Any, cast

import pytest

import underway
from tests.unit.tasks.test_clock import run_virtual
from underway.errors import ConfigError, TaskExited, TaskTimeout, TooManyChildren
from underway.tasks import Exit, Ok, Supervisor, TaskSupervisor, yield_many

Events = list[tuple[str, dict[str, Any]]]


@pytest.fixture
def events() -> Iterator[Events]:
    seen: Events = []

    def record(event: str, measurements: Mapping[str, Any], metadata: Mapping[str, Any]) -> None:
        seen.append((event, {**metadata, **measurements}))

    token = underway.attach(record, prefix="tasks.task.")
    yield seen
    underway.detach(token)


async def value_after(seconds: float, value: Any) -> Any:
    await asyncio.sleep(seconds)
    return value


async def fail_after(seconds: float, message: str) -> None:
    await asyncio.sleep(seconds)
    raise ValueError(message)


def test_start_child_keeps_a_strong_reference_until_the_task_ends() -> None:
    done: list[int] = []

    async def work(n: int) -> None:
        await asyncio.sleep(1)
        done.append(n)

    async def main() -> None:
        async with TaskSupervisor() as tasks:
            for n in range(3):
                tasks.start_child(work, n)  # the caller keeps no reference
            gc.collect()
            assert len(tasks.children()) == 3
            await asyncio.sleep(2)
            assert tasks.children() == []

    run_virtual(main())
    assert sorted(done) == [0, 1, 2]


def test_a_crash_is_reported_never_lost(events: Events, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with TaskSupervisor(name="mail") as tasks:
            tasks.start_child(fail_after, 1.0, "smtp down")
            with caplog.at_level(logging.ERROR, logger="underway.tasks"):
                await asyncio.sleep(2)

    run_virtual(main())
    assert "crashed" in caplog.text
    assert "smtp down" in caplog.text
    crashes = [m for e, m in events if e == "tasks.task.crash"]
    assert len(crashes) == 1
    assert crashes[0]["supervisor"] == "mail"
    assert str(crashes[0]["error"]) == "smtp down"
    assert [e for e, _ in events] == ["tasks.task.start", "tasks.task.crash"]


def test_await_returns_the_result_or_raises_the_error_or_times_out_leaving_the_task() -> None:
    async def main() -> None:
        async with TaskSupervisor() as tasks:
            assert await tasks.async_nolink(value_after, 1.0, "v").await_() == "v"
            with pytest.raises(ValueError, match="bad"):
                await tasks.async_nolink(fail_after, 1.0, "bad").await_()
            slow = tasks.async_nolink(value_after, 10.0, "late")
            with pytest.raises(TaskTimeout, match=r"within 2\.0s"):
                await slow.await_(timeout=2.0)
            assert not slow.done(), "the timeout must not stop a nolink task"
            assert await slow.await_(timeout=None) == "late"
            assert asyncio.get_running_loop().time() == pytest.approx(12.0)

    run_virtual(main())


def test_the_caller_being_cancelled_leaves_a_nolink_task_running() -> None:
    async def main() -> None:
        async with TaskSupervisor() as tasks:
            handle = tasks.async_nolink(value_after, 5.0, "kept")
            waiter = asyncio.get_running_loop().create_task(handle.await_(timeout=None))
            await asyncio.sleep(1)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            assert await handle.await_(timeout=None) == "kept"

    run_virtual(main())


def test_yield_is_non_destructive() -> None:
    async def main() -> None:
        async with TaskSupervisor() as tasks:
            handle = tasks.async_nolink(value_after, 3.0, 42)
            assert await handle.yield_(timeout=1.0) is None
            assert await handle.yield_(timeout=1.0) is None
            assert await handle.yield_(timeout=5.0) == Ok(42)
            assert await handle.yield_(timeout=0) == Ok(42)
            crashed = tasks.async_nolink(fail_after, 0.5, "x")
            outcome = await crashed.yield_()
            assert isinstance(outcome, Exit)
            assert isinstance(outcome.reason, ValueError)

    run_virtual(main())


def test_shutdown_cancels_and_reports_how_the_task_ended() -> None:
    async def main() -> None:
        async with TaskSupervisor() as tasks:
            running = tasks.async_nolink(value_after, 100.0, "x")
            assert await running.shutdown() is None
            assert running.task.cancelled()
            with pytest.raises(TaskExited):
                await running.await_()
            finished = tasks.async_nolink(value_after, 1.0, "done")
            await asyncio.sleep(2)
            assert await finished.shutdown() == Ok("done")

            async def returns_when_cancelled() -> str:
                try:
                    await asyncio.sleep(100)
                except asyncio.CancelledError:
                    return "partial"
                return "full"

            graceful = tasks.async_nolink(returns_when_cancelled)
            await asyncio.sleep(0)
            assert await graceful.shutdown() == Ok("partial")

    run_virtual(main())


def test_ignore_returns_a_finished_outcome_and_forbids_awaiting() -> None:
    async def main() -> None:
        async with TaskSupervisor() as tasks:
            handle = tasks.async_nolink(value_after, 1.0, "x")
            assert handle.ignore() is None
            with pytest.raises(RuntimeError, match="ignored"):
                await handle.await_()
            await asyncio.sleep(2)
            assert handle.task.result() == "x"  # it kept running
            done = tasks.async_nolink(value_after, 0.0, "y")
            await asyncio.sleep(0.1)
            assert done.ignore() == Ok("y")

    run_virtual(main())


def test_yield_many_waits_once_for_all_and_keeps_order() -> None:
    async def main() -> None:
        async with TaskSupervisor() as tasks:
            handles = [
                tasks.async_nolink(value_after, 3.0, "slow"),
                tasks.async_nolink(value_after, 1.0, "fast"),
                tasks.async_nolink(fail_after, 0.5, "bad"),
            ]
            results = await yield_many(handles, timeout=2.0)
            assert asyncio.get_running_loop().time() == pytest.approx(2.0)
            assert [h for h, _ in results] == handles
            outcomes = [r for _, r in results]
            assert outcomes[0] is None
            assert outcomes[1] == Ok("fast")
            assert isinstance(outcomes[2], Exit)
            assert next(r for _, r in await yield_many(handles, timeout=5.0)) == Ok("slow")

    run_virtual(main())


def test_max_children_refuses_more_tasks_until_one_ends() -> None:
    async def main() -> None:
        async with TaskSupervisor(max_children=2) as tasks:
            tasks.start_child(value_after, 1.0, None)
            tasks.start_child(value_after, 2.0, None)
            with pytest.raises(TooManyChildren, match="already runs 2 tasks"):
                tasks.start_child(value_after, 1.0, None)
            with pytest.raises(TooManyChildren):
                tasks.async_nolink(value_after, 1.0, None)
            await asyncio.sleep(1.5)
            tasks.start_child(value_after, 1.0, None)
            assert len(tasks.children()) == 2

    run_virtual(main())


def test_stop_cancels_running_tasks_and_reports_one_that_would_not_stop(
    events: Events, caplog: pytest.LogCaptureFixture
) -> None:
    release = asyncio.Event()
    cleaned: list[str] = []

    async def polite() -> None:
        try:
            await asyncio.sleep(100)
        finally:
            await asyncio.sleep(1)
            cleaned.append("polite")

    async def stubborn() -> None:
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(100)

    async def main() -> None:
        tasks = TaskSupervisor(shutdown_timeout=2.0, cancel_timeout=0.5)
        await tasks.start()
        tasks.start_child(polite)
        bad = tasks.start_child(stubborn)
        await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        began = loop.time()
        with caplog.at_level(logging.ERROR, logger="underway.tasks"):
            await tasks.stop()
        assert loop.time() - began == pytest.approx(2.5)
        assert tasks.left_running == [bad]
        with pytest.raises(RuntimeError, match="not running"):
            tasks.start_child(polite)
        release.set()
        await asyncio.sleep(200)

    run_virtual(main())
    assert cleaned == ["polite"]
    assert [m["phase"] for e, m in events if e == "tasks.task.timeout"] == ["shutdown", "cancel"]
    assert "would not stop even when cancelled" in caplog.text


def test_a_task_supervisor_under_a_supervisor_restarts_empty() -> None:
    async def main() -> None:
        tasks = TaskSupervisor(name="jobs")
        async with Supervisor([tasks.child_spec()]) as sup:
            assert tasks.running
            first = tasks.start_child(value_after, 100.0, None)
            assert sup.which_children()[0].kind == "supervisor"
            await tasks.stop()  # it ended by itself: a permanent child is started again
            await asyncio.sleep(0.1)
            assert first.cancelled()
            assert tasks.running
            assert tasks.children() == []
            tasks.start_child(value_after, 100.0, None)
        assert not cast(bool, tasks.running)  # mypy kept the True of the block
        assert tasks.children() == []

    run_virtual(main())


def test_a_slow_stop_does_not_forget_the_tasks_of_the_next_incarnation() -> None:
    async def slow_to_stop() -> None:
        try:
            await asyncio.sleep(10_000)
        finally:
            await asyncio.sleep(1)  # cleanup, well within shutdown_timeout

    async def main() -> None:
        tasks = TaskSupervisor(name="jobs")
        async with Supervisor([tasks.child_spec()]):
            tasks.start_child(slow_to_stop)
            await asyncio.sleep(0)
            stopping = asyncio.get_running_loop().create_task(tasks.stop())
            await asyncio.sleep(0.5)  # run() returned: the supervisor started it again
            assert tasks.running
            second = tasks.start_child(value_after, 100.0, None)
            await stopping  # the first incarnation's stop ends now
            assert tasks.children() == [second]
        assert second.cancelled()

    run_virtual(main())


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"max_children": 0}, "max_children must be an int >= 1"),
        ({"shutdown_timeout": -1}, "shutdown_timeout must be a number"),
        ({"cancel_timeout": None}, "cancel_timeout must be a number"),
        ({"name": ""}, "non-empty string"),
    ],
)
def test_bad_options(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        TaskSupervisor(**options)
