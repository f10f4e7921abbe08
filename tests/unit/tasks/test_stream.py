"""async_stream: order, bounded concurrency, lazy input, timeouts, errors and early close."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.unit.tasks.test_clock import run_virtual
from underway.errors import ConfigError, TaskTimeout
from underway.tasks import Exit, async_stream


class Probe:
    """Counts running tasks and the most seen at once; each item sleeps ``item`` seconds."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.started: list[Any] = []
        self.cancelled: list[Any] = []

    async def __call__(self, item: float) -> float:
        self.running += 1
        self.peak = max(self.peak, self.running)
        self.started.append(item)
        try:
            await asyncio.sleep(item)
        except asyncio.CancelledError:
            self.cancelled.append(item)
            raise
        finally:
            self.running -= 1
        return item * 10


async def collect(stream: Any) -> list[Any]:
    return [x async for x in stream]


def test_ordered_results_come_in_input_order_with_bounded_concurrency() -> None:
    probe = Probe()
    delays = [3.0, 1.0, 2.0, 0.5, 0.1, 1.5]

    async def main() -> tuple[list[Any], float]:
        out = await collect(async_stream(delays, probe, max_concurrency=2))
        return out, asyncio.get_running_loop().time()

    out, took = run_virtual(main())
    assert out == [d * 10 for d in delays]
    assert probe.peak == 2
    # a result held back behind the slow head keeps its slot until it is yielded: 3.0 and
    # 1.0 run first; 2.0 and 0.5 start at 3; 0.1 and 1.5 once 2.0 is yielded at 5
    assert took == pytest.approx(6.5)


def test_unordered_results_come_as_they_complete() -> None:
    async def main() -> list[Any]:
        return await collect(
            async_stream([3.0, 1.0, 2.0], Probe(), max_concurrency=3, ordered=False)
        )

    assert run_virtual(main()) == [10.0, 20.0, 30.0]


def test_input_is_pulled_lazily_only_when_a_slot_is_free() -> None:
    pulled: list[int] = []

    def endless() -> Iterator[float]:
        n = 0
        while True:
            pulled.append(n)
            n += 1
            yield 1.0

    async def main() -> None:
        stream = async_stream(endless(), Probe(), max_concurrency=3)
        assert pulled == [], "nothing may run before iteration"
        async with contextlib.aclosing(stream):
            assert await anext(stream) == 10.0
            seen = len(pulled)
            assert seen <= 3  # a result keeps its slot until it is yielded
            await asyncio.sleep(100)  # the consumer is busy: tasks end, nothing more is pulled
            assert len(pulled) == seen
            for _ in range(4):
                await anext(stream)
            assert len(pulled) <= seen + 4

    run_virtual(main())


def test_async_iterables_work_and_a_slow_source_does_not_hold_back_results() -> None:
    async def source() -> AsyncIterator[float]:
        yield 1.0
        yield 1.0
        await asyncio.sleep(100)  # a slow producer
        yield 1.0

    async def main() -> list[tuple[float, float]]:
        loop = asyncio.get_running_loop()
        stream = async_stream(source(), Probe(), ordered=False, max_concurrency=3)
        return [(r, loop.time()) async for r in stream]

    assert run_virtual(main()) == [(10.0, 1.0), (10.0, 1.0), (10.0, 101.0)]


def test_a_timeout_raises_by_default_and_cancels_the_rest() -> None:
    probe = Probe()

    async def main() -> None:
        with pytest.raises(TaskTimeout, match=r"past its 2\.0s timeout"):
            await collect(async_stream([1.0, 5.0, 1.5, 9.0], probe, max_concurrency=4, timeout=2.0))
        assert asyncio.get_running_loop().time() == pytest.approx(2.0)

    run_virtual(main())
    assert sorted(probe.cancelled) == [5.0, 9.0]
    assert probe.running == 0


def test_kill_task_yields_an_exit_in_place_and_goes_on() -> None:
    probe = Probe()

    async def main() -> list[Any]:
        return await collect(
            async_stream(
                [1.0, 5.0, 1.5, 0.5], probe, max_concurrency=2, timeout=2.0, on_timeout="kill_task"
            )
        )

    out = run_virtual(main())
    assert out == [10.0, Exit("timeout", 5.0), 15.0, 5.0]
    assert probe.cancelled == [5.0]


def test_kill_task_unordered_reports_the_input() -> None:
    async def main() -> list[Any]:
        stream = async_stream(
            [9.0, 1.0], Probe(), ordered=False, timeout=3.0, on_timeout="kill_task"
        )
        return await collect(stream)

    assert run_virtual(main()) == [10.0, Exit("timeout", 9.0)]


def test_an_error_in_fn_cancels_in_flight_work_and_reaches_the_consumer() -> None:
    cancelled: list[int] = []

    async def work(n: int) -> int:
        try:
            await asyncio.sleep(n)
        except asyncio.CancelledError:
            cancelled.append(n)
            raise
        if n == 2:
            raise KeyError("item 2")
        return n

    got: list[int] = []

    async def consume() -> None:
        async for r in async_stream([1, 2, 3, 4], work, max_concurrency=4):
            got.append(r)

    with pytest.raises(KeyError, match="item 2"):
        run_virtual(consume())
    assert got == [1]
    assert sorted(cancelled) == [3, 4]


def test_closing_early_cancels_in_flight_work() -> None:
    probe = Probe()
    pulled: list[float] = []

    def items() -> Iterator[float]:
        for item in [1.0, 50.0, 60.0, 70.0, 80.0]:
            pulled.append(item)
            yield item

    async def main() -> None:
        stream = async_stream(items(), probe, max_concurrency=3)
        assert await anext(stream) == 10.0
        await stream.aclose()
        assert probe.running == 0
        assert sorted(probe.cancelled) == [50.0, 60.0]
        await asyncio.sleep(1000)

    run_virtual(main())
    # 1.0 kept its slot until it was yielded, and nothing was pulled after that
    assert pulled == [1.0, 50.0, 60.0]
    assert probe.started == [1.0, 50.0, 60.0]


def test_breaking_out_cancels_in_flight_work_once_the_generator_is_collected() -> None:
    probe = Probe()

    async def main() -> None:
        async for _ in async_stream([1.0, 50.0, 60.0], probe, max_concurrency=3):
            break
        gc.collect()
        for _ in range(5):  # the event loop's async-generator hook closes it
            await asyncio.sleep(0)
        assert sorted(probe.cancelled) == [50.0, 60.0]

    run_virtual(main())


def test_cancelling_the_consumer_cancels_in_flight_work_and_propagates() -> None:
    probe = Probe()

    async def consume() -> None:
        async with contextlib.aclosing(async_stream([100.0, 100.0], probe)) as stream:
            async for _ in stream:
                pass

    async def main() -> None:
        task = asyncio.get_running_loop().create_task(consume())
        await asyncio.sleep(1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert probe.cancelled == [100.0, 100.0]

    run_virtual(main())


def test_empty_input_and_no_timeout() -> None:
    async def main() -> tuple[list[Any], list[Any]]:
        empty = await collect(async_stream([], Probe()))
        slow = await collect(async_stream([1000.0], Probe(), timeout=None))
        return empty, slow

    assert run_virtual(main()) == ([], [10000.0])


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"max_concurrency": 0}, "max_concurrency must be an int >= 1"),
        ({"timeout": -1}, "timeout must be a number"),
        ({"on_timeout": "ignore"}, "on_timeout must be one of raise, kill_task"),
        ({"ordered": "yes"}, "ordered must be True or False"),
    ],
)
def test_bad_options_raise_at_the_call(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        async_stream([1], Probe(), **options)


def test_bad_arguments_raise_at_the_call() -> None:
    with pytest.raises(ConfigError, match="fn must be an async function"):
        async_stream([1], "nope")  # type: ignore[call-overload]
    with pytest.raises(ConfigError, match="expected an iterable"):
        async_stream(5, Probe())  # type: ignore[call-overload]


def test_a_slow_head_does_not_let_an_ordered_stream_run_ahead_of_the_consumer() -> None:
    pulled: list[int] = []

    def items() -> Iterator[int]:
        for n in range(1000):
            pulled.append(n)
            yield n

    async def work(n: int) -> int:
        if n == 0:
            await asyncio.sleep(10)  # the head is slow; the others end at once
        return n

    async def main() -> int:
        stream = async_stream(items(), work, max_concurrency=4, timeout=None)
        async with contextlib.aclosing(stream):
            assert await anext(stream) == 0
            return len(pulled)

    # results held back behind the head count against max_concurrency, as in Elixir:
    # the stream may not buffer the whole (possibly endless) input while it waits
    assert run_virtual(main()) <= 4


def test_a_slow_consumer_bounds_what_an_unordered_stream_buffers() -> None:
    pulled: list[int] = []

    def items() -> Iterator[int]:
        for n in range(1000):
            pulled.append(n)
            yield n

    async def instant(n: int) -> int:
        return n

    async def main() -> int:
        stream = async_stream(items(), instant, max_concurrency=4, ordered=False)
        async with contextlib.aclosing(stream):
            for _ in range(10):
                await anext(stream)
                await asyncio.sleep(1)  # the consumer is busy; tasks end meanwhile
            return len(pulled)

    assert run_virtual(main()) <= 10 + 4


def test_a_killed_task_failing_in_its_cleanup_is_retrieved_not_left_to_the_loop() -> None:
    async def work(seconds: float) -> float:
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            raise OSError("cleanup failed") from None
        return seconds

    async def main() -> tuple[list[Any], list[str]]:
        loop = asyncio.get_running_loop()
        unhandled: list[str] = []
        loop.set_exception_handler(lambda _, context: unhandled.append(context["message"]))
        out = await collect(
            async_stream([5.0, 1.0], work, max_concurrency=2, timeout=2.0, on_timeout="kill_task")
        )
        gc.collect()
        await asyncio.sleep(0)
        return out, unhandled

    out, unhandled = run_virtual(main())
    assert out == [Exit("timeout", 5.0), 1.0]
    assert unhandled == []
