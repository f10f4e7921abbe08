"""Small asyncio helpers shared by every long-running component."""

from __future__ import annotations

import abc
import asyncio
import contextlib
from typing import Any, Self

__all__ = ["Service", "cancel_and_wait", "wait_event"]


class Service(abc.ABC):
    """Something that is started and stopped; ``async with`` does both."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Start."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (if any) and wait until it has finished."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def wait_event(event: asyncio.Event, seconds: float | None) -> bool:
    """Wait for ``event`` up to ``seconds`` (``None``: forever); return whether it was set."""
    if seconds is None:
        await event.wait()
        return True
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
    return event.is_set()
