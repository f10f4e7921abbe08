"""serve(): start, wait for a stop, stop within the bound; a give-up or a failed start raises."""

from __future__ import annotations

import asyncio
import logging
import signal

import pytest

from tests.unit.tasks.test_clock import run_virtual
from underway.errors import ChildStartError, TooManyRestarts
from underway.tasks import ChildSpec, Ready, Supervisor, serve


def test_serve_runs_until_stop_then_stops_in_reverse_order() -> None:
    log: list[tuple[str, str, float]] = []

    def child(name: str, cleanup: float) -> ChildSpec:
        async def body() -> None:
            log.append(("start", name, asyncio.get_running_loop().time()))
            try:
                await asyncio.sleep(10_000)
            finally:
                await asyncio.sleep(cleanup)
                log.append(("stop", name, asyncio.get_running_loop().time()))

        return ChildSpec(name, body, shutdown=60)

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(5, stop.set)
        await serve([child("a", 1.0), child("b", 2.0)], stop=stop, shutdown_timeout=30)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers removed

    run_virtual(main())
    assert log == [("start", "a", 0.0), ("start", "b", 0.0), ("stop", "b", 7.0), ("stop", "a", 8.0)]


def test_serve_bounds_the_whole_shutdown() -> None:
    async def slow_cleanup() -> None:
        try:
            await asyncio.sleep(10_000)
        finally:
            await asyncio.sleep(100)

    async def main() -> float:
        stop = asyncio.Event()
        stop.set()
        loop = asyncio.get_running_loop()
        await serve([ChildSpec("slow", slow_cleanup, shutdown=None)], stop=stop, shutdown_timeout=3)
        return loop.time()

    assert run_virtual(main()) == pytest.approx(3.0)


def test_serve_raises_when_the_supervisor_gives_up() -> None:
    async def crash() -> None:
        await asyncio.sleep(1)
        raise RuntimeError("boom")

    async def main() -> None:
        with pytest.raises(TooManyRestarts):
            await serve(Supervisor([ChildSpec("c", crash)], name="root"))

    run_virtual(main())


def test_serve_raises_when_a_child_fails_to_start_and_logs_no_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(*, ready: Ready) -> None:
        raise OSError("port in use")

    async def main() -> None:
        with pytest.raises(ChildStartError, match="'web' failed to start") as info:
            await serve(
                [ChildSpec("first", asyncio.Event().wait), ChildSpec("web", broken, ready=True)]
            )
        assert isinstance(info.value.__cause__, OSError)

    with caplog.at_level(logging.INFO, logger="underway"):
        run_virtual(main())
    # The caller gets the error: logging it too would report it twice (a CLI prints it once).
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
