"""LeaseKeeper: extends what is held, stops extending what is discarded, survives errors."""

from __future__ import annotations

import asyncio
import logging

import pytest

from underway.pipelines.producers._leases import LeaseKeeper


async def _until(predicate: object, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.005)


async def test_held_items_are_extended_until_discarded() -> None:
    calls: list[list[str]] = []

    async def extend(items: list[str]) -> None:
        calls.append(items)

    keeper: LeaseKeeper[str] = LeaseKeeper(extend, interval=0.01, name="t")
    keeper.add(["a", "b", "c"])
    keeper.start()
    try:
        await _until(lambda: len(calls) >= 2)
        assert calls[0] == ["a", "b", "c"]
        keeper.discard(["b", "unknown"])
        assert len(keeper) == 2
        assert "b" not in keeper
        seen = len(calls)
        await _until(lambda: len(calls) > seen + 1)
        assert calls[-1] == ["a", "c"]
        keeper.clear()
        seen = len(calls)
        await asyncio.sleep(0.05)
        assert len(calls) == seen  # nothing held: nothing extended
    finally:
        await keeper.stop()
    assert keeper._task is None


async def test_a_failing_extend_is_logged_once_and_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    attempts = 0

    async def extend(items: list[int]) -> None:
        nonlocal attempts
        attempts += 1
        if attempts <= 3:
            raise ConnectionError("broker away")

    keeper: LeaseKeeper[int] = LeaseKeeper(extend, interval=0.01, name="keeper-x")
    keeper.add([1])
    with caplog.at_level(logging.INFO, logger="underway.pipelines.leases"):
        keeper.start()
        try:
            await _until(lambda: attempts >= 5)
        finally:
            await keeper.stop()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(warnings) == 1
    assert "broker away" in warnings[0].getMessage()
    assert len(infos) == 1
    assert "works again" in infos[0].getMessage()


@pytest.mark.parametrize("interval", [0, -1, True, "1"])
def test_interval_must_be_positive(interval: object) -> None:
    async def extend(items: list[int]) -> None:
        return None

    with pytest.raises(ValueError, match="interval"):
        LeaseKeeper(extend, interval=interval, name="t")  # type: ignore[arg-type]
