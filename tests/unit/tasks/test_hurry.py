"""Supervisor.hurry(): cutting the grace periods of a stop short, and serve's second signal.

Every test runs on the virtual clock (``run_virtual``): the times asserted are the
virtual times at which children were asked, hurried and ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from tests.unit.tasks.test_clock import run_virtual
from tests.unit.tasks.test_supervisor import Log
from underway.tasks import ChildSpec, Ready, Supervisor, TaskSupervisor, serve

Start = Callable[..., Coroutine[Any, Any, None]]


def draining(log: Log, name: str, *, work: float = 30.0, hurry: bool = True) -> Start:
    """A child asked to stop through its hook, which then finishes ``work`` seconds of work,
    unless it is hurried (when it registered ``on_hurry``)."""

    async def child(*, ready: Ready) -> None:
        asked, hurried = asyncio.Event(), asyncio.Event()

        def on_shutdown() -> None:
            log.add("asked", name)
            asked.set()

        def on_hurry() -> None:
            log.add("hurry", name)
            hurried.set()

        ready.on_shutdown(on_shutdown)
        if hurry:
            ready.on_hurry(on_hurry)
        ready()
        try:
            await asked.wait()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(work):
                    await hurried.wait()
            log.add("stop", name)
        except asyncio.CancelledError:
            log.add("cancelled", name)
            raise

    return child


def tree(log: Log) -> Supervisor:
    """``a`` without ``on_hurry``, then ``b`` and ``c`` with it; 60 s of shutdown each."""
    return Supervisor(
        [
            ChildSpec("a", draining(log, "a", hurry=False), ready=True, shutdown=60),
            ChildSpec("b", draining(log, "b"), ready=True, shutdown=60),
            ChildSpec("c", draining(log, "c"), ready=True, shutdown=60),
        ],
        name="app",
    )


def test_an_unhurried_stop_gives_each_child_its_time_in_reverse_order() -> None:
    log = Log()

    async def main() -> None:
        async with tree(log):
            await asyncio.sleep(1)

    run_virtual(main())
    assert log.entries == [
        ("asked", "c", 1.0),
        ("stop", "c", 31.0),
        ("asked", "b", 31.0),
        ("stop", "b", 61.0),
        ("asked", "a", 61.0),
        ("stop", "a", 91.0),
    ]


def test_hurry_during_the_stop_hurries_the_child_stopping_and_those_after_it() -> None:
    log = Log()

    async def main() -> None:
        sup = tree(log)
        await sup.start()
        await asyncio.sleep(1)
        loop = asyncio.get_running_loop()
        loop.call_later(4, sup.hurry)
        loop.call_later(4.5, sup.hurry)  # a second hurry calls no callback twice
        await sup.stop()

    run_virtual(main())
    assert log.entries == [
        ("asked", "c", 1.0),
        ("hurry", "c", 5.0),  # keeps what is left of its 60 s: it ends at once here
        ("stop", "c", 5.0),
        ("asked", "b", 5.0),  # still in reverse order; asked, then hurried at once
        ("hurry", "b", 5.0),
        ("stop", "b", 5.0),
        ("cancelled", "a", 5.0),  # no on_hurry: cancelled without being asked first
    ]


def test_hurry_before_the_stop_hurries_it_and_only_it() -> None:
    log = Log()

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        sup = tree(log)
        await sup.start()
        sup.hurry()
        await asyncio.sleep(1)  # hurrying does not stop anything by itself
        assert [c.status for c in sup.which_children()] == ["running"] * 3
        await sup.stop()
        stopped = loop.time()
        await sup.start()  # the next run is not hurried
        await sup.stop()
        return [stopped, loop.time()]

    assert run_virtual(main()) == [1.0, 91.0]
    assert log.seq()[:6] == [
        ("asked", "c"),
        ("hurry", "c"),
        ("stop", "c"),
        ("asked", "b"),
        ("hurry", "b"),
        ("stop", "b"),
    ]
    assert log.seq()[6] == ("cancelled", "a")
    assert log.count("hurry", "c") == 1


def test_a_child_with_on_hurry_keeps_what_is_left_of_its_shutdown() -> None:
    log = Log()

    async def stubborn(*, ready: Ready) -> None:
        ready.on_hurry(lambda: log.add("hurry", "s"))  # noted, but the work goes on
        ready()
        try:
            await asyncio.sleep(10_000)
        finally:
            log.add("asked", "s")
            await asyncio.sleep(100)  # interrupted by the cancellation after `shutdown`

    async def main() -> None:
        sup = Supervisor([ChildSpec("s", stubborn, ready=True, shutdown=20)], name="app")
        await sup.start()
        asyncio.get_running_loop().call_later(5, sup.hurry)
        await sup.stop()
        log.add("stopped", "app")

    run_virtual(main())
    assert log.entries == [("asked", "s", 0.0), ("hurry", "s", 5.0), ("stopped", "app", 20.0)]


def test_nested_supervisors_are_hurried_recursively() -> None:
    log = Log()

    async def main() -> None:
        inner = Supervisor(
            [
                ChildSpec("x", draining(log, "x", hurry=False), ready=True, shutdown=60),
                ChildSpec("y", draining(log, "y"), ready=True, shutdown=60),
            ],
            name="inner",
        )
        outer = Supervisor(
            [inner.child_spec(), ChildSpec("z", draining(log, "z"), ready=True, shutdown=60)],
            name="outer",
        )
        await outer.start()
        await asyncio.sleep(1)
        asyncio.get_running_loop().call_later(1, outer.hurry)
        await outer.stop()
        log.add("stopped", "outer")

    run_virtual(main())
    assert log.entries == [
        ("asked", "z", 1.0),
        ("hurry", "z", 2.0),
        ("stop", "z", 2.0),
        ("asked", "y", 2.0),
        ("hurry", "y", 2.0),
        ("stop", "y", 2.0),
        ("cancelled", "x", 2.0),
        ("stopped", "outer", 2.0),
    ]


def test_a_task_supervisor_child_cancels_its_tasks_again_when_hurried() -> None:
    log = Log()

    async def slow_cleanup() -> None:
        try:
            await asyncio.sleep(10_000)
        finally:
            log.add("cleanup", "task")
            await asyncio.sleep(100)  # the second cancellation interrupts it

    async def main(hurry_at: float | None) -> float:
        loop = asyncio.get_running_loop()
        background = TaskSupervisor(name="background", shutdown_timeout=50)
        sup = Supervisor([background.child_spec()], name="app")
        await sup.start()
        background.start_child(slow_cleanup)
        await asyncio.sleep(1)
        if hurry_at is not None:
            loop.call_later(hurry_at, sup.hurry)
        await sup.stop()
        return loop.time()

    assert run_virtual(main(None)) == 51.0
    assert run_virtual(main(3)) == 4.0


def test_an_on_hurry_callback_that_raises_is_reported_and_the_child_cancelled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = Log()

    async def broken(*, ready: Ready) -> None:
        def on_hurry() -> None:
            raise OSError("hurry failed")

        ready.on_hurry(on_hurry)
        ready()
        try:
            await asyncio.sleep(10_000)
        finally:
            log.add("asked", "broken")
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(30)  # cleanup, cut short by the cancellation
            log.add("stop", "broken")

    async def main() -> None:
        sup = Supervisor([ChildSpec("broken", broken, ready=True, shutdown=60)], name="app")
        await sup.start()
        asyncio.get_running_loop().call_later(2, sup.hurry)
        await sup.stop()

    with caplog.at_level(logging.ERROR, logger="underway.tasks"):
        run_virtual(main())
    assert log.entries == [("asked", "broken", 0.0), ("stop", "broken", 2.0)]
    assert "hurry hook of child 'broken' failed" in caplog.text


@pytest.mark.parametrize("signals", [1, 2])
def test_serve_stops_on_the_first_signal_and_hurries_on_the_second(signals: int) -> None:
    log = Log()

    async def main() -> float:
        loop = asyncio.get_running_loop()
        for n in range(signals):
            loop.call_later(1 + 2 * n, signal.raise_signal, signal.SIGTERM)
        await serve(tree(log), shutdown_timeout=300)
        return loop.time()

    ended = run_virtual(main())
    assert log.seq("asked", "stop", "cancelled")[0] == ("asked", "c")
    if signals == 1:
        assert ended == 91.0
        assert log.seq("stop", "cancelled") == [("stop", "c"), ("stop", "b"), ("stop", "a")]
    else:
        assert ended == 3.0
        assert log.seq("stop", "cancelled") == [("stop", "c"), ("stop", "b"), ("cancelled", "a")]
        assert log.count("hurry", "c") == log.count("hurry", "b") == 1


@pytest.mark.parametrize("strategy", ["one_for_all", "rest_for_one"])
def test_a_hurry_does_not_hurry_the_restarts_after_it(strategy: Any) -> None:
    log = Log()
    crashes = 0

    async def crashing(*, ready: Ready) -> None:
        nonlocal crashes
        ready()
        await asyncio.sleep(5)
        if crashes == 0:
            crashes += 1
            raise OSError("crash")
        await asyncio.sleep(10_000)

    async def main() -> None:
        sup = Supervisor(
            [
                ChildSpec("crashing", crashing, ready=True),
                ChildSpec("b", draining(log, "b"), ready=True, shutdown=60),
                ChildSpec("c", draining(log, "c", hurry=False), ready=True, shutdown=60),
            ],
            strategy=strategy,
            name="app",
        )
        await sup.start()
        sup.hurry()  # for the stop to come, not for the restart at 5 s
        await asyncio.sleep(100)
        await sup.stop()

    run_virtual(main())
    assert log.entries == [
        # the restart asks its siblings and gives each its time
        ("asked", "c", 5.0),
        ("stop", "c", 35.0),
        ("asked", "b", 35.0),
        ("stop", "b", 65.0),
        # the supervisor's own stop is the one hurried
        ("cancelled", "c", 100.0),
        ("asked", "b", 100.0),
        ("hurry", "b", 100.0),
        ("stop", "b", 100.0),
    ]


def test_a_hurry_during_a_restart_hurries_that_stop_and_the_supervisor_s_own() -> None:
    log = Log()
    crashes = 0

    async def crashing(*, ready: Ready) -> None:
        nonlocal crashes
        ready()
        await asyncio.sleep(5)
        if crashes < 2:
            crashes += 1
            raise OSError("crash")
        await asyncio.sleep(10_000)

    async def main() -> None:
        sup = Supervisor(
            [
                ChildSpec("crashing", crashing, ready=True),
                ChildSpec("b", draining(log, "b"), ready=True, shutdown=60),
            ],
            strategy="one_for_all",
            max_restarts=10,
            name="app",
        )
        await sup.start()
        asyncio.get_running_loop().call_later(10, sup.hurry)  # during the first restart
        await asyncio.sleep(200)
        await sup.stop()

    run_virtual(main())
    assert log.entries == [
        ("asked", "b", 5.0),
        ("hurry", "b", 10.0),
        ("stop", "b", 10.0),
        ("asked", "b", 15.0),  # the second restart is not hurried
        ("stop", "b", 45.0),
        ("asked", "b", 200.0),  # the supervisor's own stop is
        ("hurry", "b", 200.0),
        ("stop", "b", 200.0),
    ]
