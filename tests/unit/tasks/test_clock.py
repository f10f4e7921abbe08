"""A virtual-time event loop for the tasks tests, and tests that it really fakes time.

``run_virtual(coro)`` runs ``coro`` on an event loop whose clock only moves when nothing
is ready to run: it then jumps to the next timer. Sleeps, timeouts and restart windows
take no real time, and their order is exactly what the timers say. A loop that would
wait forever (nothing ready, no timer) raises at once instead of hanging the test. After
the coroutine returns, any task still running is a leak and fails the test.
"""

from __future__ import annotations

import asyncio
import selectors
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

T = TypeVar("T")


class Deadlock(RuntimeError):
    """The loop had nothing to run and no timer: it would wait forever."""


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose ``time()`` jumps to the next timer whenever it would wait."""

    def __init__(self) -> None:
        super().__init__(selectors.DefaultSelector())
        self.now = 0.0
        real_select = self._selector.select  # type: ignore[attr-defined]

        def select(timeout: float | None = None) -> list[Any]:
            events = real_select(0)
            if events:
                return events  # type: ignore[no-any-return]
            if timeout is None:
                events = real_select(0.5)  # a thread may still wake us through the self-pipe
                if not events:
                    raise Deadlock("virtual clock: nothing to run and no timer (a deadlock)")
                return events  # type: ignore[no-any-return]
            if timeout > 0:
                self.now += timeout
            return []

        self._selector.select = select  # type: ignore[attr-defined]

    def time(self) -> float:
        return self.now


def run_virtual(main: Coroutine[Any, Any, T], *, allow_leftovers: bool = False) -> T:
    """Run ``main`` on a fresh :class:`VirtualClockLoop`; fail if it leaves tasks running."""
    loop = VirtualClockLoop()
    try:
        result = loop.run_until_complete(main)
        left = [t for t in asyncio.all_tasks(loop) if not t.done()]
        # Let callbacks scheduled by the last step (done callbacks, finalizers) run.
        loop.run_until_complete(asyncio.sleep(0))
        left = [t for t in left if not t.done()]
        if left and not allow_leftovers:
            raise AssertionError(f"tasks left running: {[t.get_name() for t in left]}")
        return result
    finally:
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def test_sleeping_an_hour_takes_no_real_time() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(3600)
        return loop.time()

    started = time.monotonic()
    assert run_virtual(main()) == pytest.approx(3600)
    assert time.monotonic() - started < 5.0, "the virtual loop slept for real"


def test_timers_fire_in_order_and_timeouts_use_virtual_time() -> None:
    async def main() -> list[tuple[str, float]]:
        loop = asyncio.get_running_loop()
        seen: list[tuple[str, float]] = []

        async def at(label: str, delay: float) -> None:
            await asyncio.sleep(delay)
            seen.append((label, loop.time()))

        async with asyncio.TaskGroup() as tg:
            tg.create_task(at("b", 2.0))
            tg.create_task(at("a", 1.0))
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(10):
                await asyncio.sleep(60)
        seen.append(("timeout", loop.time()))
        return seen

    assert run_virtual(main()) == [("a", 1.0), ("b", 2.0), ("timeout", 12.0)]


def test_a_deadlock_fails_fast_instead_of_hanging() -> None:
    async def main() -> None:
        await asyncio.get_running_loop().create_future()

    with pytest.raises(Deadlock):
        run_virtual(main())


def test_a_leaked_task_fails_the_test() -> None:
    async def main() -> None:
        asyncio.get_running_loop().create_task(asyncio.sleep(10), name="leaky")

    with pytest.raises(AssertionError, match="leaky"):
        run_virtual(main())
