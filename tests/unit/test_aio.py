"""The lifecycle helpers: components started in order and stopped in reverse, cancellation."""

from __future__ import annotations

import asyncio

import pytest

from underway._aio import (
    Component,
    cancel_and_wait,
    finish_despite_cancel,
    start_in_order,
    stop_in_reverse,
)

WAIT = 10.0


class Part:
    """A component that records its start and stop in a shared log."""

    def __init__(self, name: str, log: list[str], *, fail_start: bool = False) -> None:
        self.name = name
        self.log = log
        self.fail_start = fail_start
        self.fail_stop = False
        self.stop_gate: asyncio.Event | None = None  # while unset, stop waits for it

    async def start(self) -> None:
        if self.fail_start:
            raise RuntimeError(f"{self.name} cannot start")
        self.log.append(f"start {self.name}")

    async def stop(self, timeout: float | None = None) -> None:
        self.log.append(f"stop {self.name}")
        if self.stop_gate is not None:
            await self.stop_gate.wait()
        if self.fail_stop:
            raise RuntimeError(f"{self.name} failed to stop")


def test_a_part_is_a_component() -> None:
    assert isinstance(Part("a", []), Component)


async def test_components_start_in_order_and_stop_in_reverse() -> None:
    log: list[str] = []
    parts = [Part(n, log) for n in "abc"]
    await start_in_order(parts)
    await stop_in_reverse(parts)
    assert log == ["start a", "start b", "start c", "stop c", "stop b", "stop a"]


async def test_a_failed_start_stops_those_started_in_reverse() -> None:
    log: list[str] = []
    parts = [Part("a", log), Part("b", log), Part("c", log, fail_start=True), Part("d", log)]
    with pytest.raises(RuntimeError, match="c cannot start"):
        await start_in_order(parts)
    assert log == ["start a", "start b", "stop b", "stop a"]


async def test_a_failed_stop_does_not_keep_the_others_running() -> None:
    log: list[str] = []
    parts = [Part(n, log) for n in "abc"]
    parts[1].fail_stop = True
    await start_in_order(parts)
    with pytest.raises(RuntimeError, match="b failed to stop"):
        await stop_in_reverse(parts)
    assert log[3:] == ["stop c", "stop b", "stop a"]


async def test_a_cancelled_stop_still_stops_the_others_then_propagates() -> None:
    log: list[str] = []
    parts = [Part(n, log) for n in "abc"]
    parts[1].stop_gate = asyncio.Event()
    await start_in_order(parts)
    stopping = asyncio.create_task(stop_in_reverse(parts))
    while "stop b" not in log:
        await asyncio.sleep(0)
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    assert log[3:] == ["stop c", "stop b", "stop a"]


async def test_a_cancelled_caller_hurries_the_work_and_waits_for_its_end() -> None:
    hurried = asyncio.Event()
    ended: list[str] = []

    async def work() -> str:
        await hurried.wait()
        await asyncio.sleep(0.05)  # what is left to do once hurried
        ended.append("work")
        return "done"

    caller = asyncio.create_task(finish_despite_cancel(work(), hurried.set))
    await asyncio.sleep(0.01)
    caller.cancel()
    await asyncio.sleep(0.01)
    caller.cancel()  # a second cancellation does not cut the rest short either
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert hurried.is_set()
    assert ended == ["work"]


async def test_an_uncancelled_caller_gets_the_result_or_the_error() -> None:
    async def work() -> str:
        return "done"

    async def fails() -> None:
        raise RuntimeError("failed")

    assert await finish_despite_cancel(work(), lambda: None) == "done"
    with pytest.raises(RuntimeError, match="failed"):
        await finish_despite_cancel(fails(), lambda: None)


async def test_cancel_and_wait_cancels_again_a_task_that_lost_its_cancellation() -> None:
    lost = 0

    async def loop() -> None:
        nonlocal lost
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if lost:
                    raise
                lost += 1  # as when asyncio.wait_for drops a cancellation: the loop runs on

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task), WAIT)
    assert task.cancelled()
    assert lost == 1
