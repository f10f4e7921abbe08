"""An in-memory producer, for tests and for measuring the pipeline itself."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from underway.pipelines.message import Message

__all__ = ["DummyProducer", "RecordingAcknowledger"]


class RecordingAcknowledger:
    """Records every acknowledgement it receives (and how many calls carried them)."""

    def __init__(self) -> None:
        self.successful: list[Message] = []
        self.failed: list[Message] = []
        self.calls = 0
        self.changed = asyncio.Event()

    def ack(self, successful: Sequence[Message], failed: Sequence[Message]) -> None:
        """Record the messages."""
        self.calls += 1
        self.successful.extend(successful)
        self.failed.extend(failed)
        self.changed.set()

    @property
    def count(self) -> int:
        """Messages acknowledged so far (successful and failed)."""
        return len(self.successful) + len(self.failed)

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        """Wait until at least ``count`` messages were acknowledged.

        Raises:
            TimeoutError: Fewer were acknowledged within ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            while self.count < count:
                self.changed.clear()
                await self.changed.wait()


class DummyProducer:
    """Hands out data pushed with :meth:`push`, never more than the demand asked for.

    Args:
        data: Initial payloads.
        acknowledger: Shared by every message (default: a new :class:`RecordingAcknowledger`).
    """

    def __init__(
        self, data: Sequence[Any] = (), *, acknowledger: RecordingAcknowledger | None = None
    ) -> None:
        self.acknowledger = acknowledger or RecordingAcknowledger()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self.demands: list[int] = []
        self.emitted = 0
        self.draining = False
        self.push(*data)

    def push(self, *data: Any) -> None:
        """Make payloads available to the pipeline."""
        for item in data:
            self._queue.put_nowait(item)

    @property
    def pending(self) -> int:
        """Payloads not yet handed to the pipeline."""
        return self._queue.qsize()

    async def fetch(self, demand: int) -> list[Message]:
        """Wait for at least one payload, then return up to ``demand`` messages."""
        self.demands.append(demand)
        items = [await self._queue.get()]
        while len(items) < demand and not self._queue.empty():
            items.append(self._queue.get_nowait())
        self.emitted += len(items)
        return [Message(data=item, acknowledger=self.acknowledger) for item in items]

    async def prepare_for_draining(self) -> None:
        """Note that the pipeline is draining (no further fetches will happen)."""
        self.draining = True
