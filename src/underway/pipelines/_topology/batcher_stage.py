"""The batcher stage: one named batcher groups handled messages into batches."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from underway.pipelines._policy import BatcherConfig, batch_full, partition
from underway.pipelines._topology.stage import Stage
from underway.pipelines.message import BatchInfo, BatchTrigger, Message

__all__ = ["BatcherStage", "Outbox"]

Outbox = asyncio.Queue[tuple[list[Message], BatchInfo]]
Reject = Callable[[list[Message]], Awaitable[None]]


class _Flush:
    """The marker a batcher's inbox receives when it must cut its batches now."""


_FLUSH = _Flush()


class BatcherStage(Stage):
    """Cuts batches per ``(partition, batch_key)`` by size, timeout or flush.

    Messages arrive through :meth:`put`; cut batches go to ``outboxes[partition]``, one
    per batch processor with ``partition_by`` (else one shared). A message that cannot be
    batched (its partition or ``batch_size`` function raised, its ``batch_key`` is
    unhashable) fails and is handed to ``reject``. Draining cuts every open batch.
    """

    def __init__(
        self,
        pipeline: str,
        config: BatcherConfig,
        *,
        flush_ids: set[int],
        reject: Reject,
        hurried: asyncio.Event,
    ) -> None:
        super().__init__(pipeline, hurried)
        self.config = config
        self._inbox: asyncio.Queue[Message | _Flush] = asyncio.Queue()
        count = config.concurrency if config.partition_by is not None else 1
        self.outboxes: list[Outbox] = [asyncio.Queue() for _ in range(count)]
        self._flush_ids = flush_ids
        self._reject = reject
        self._pending: dict[tuple[int, Any], list[Message]] = {}
        self._deadlines: dict[tuple[int, Any], float] = {}

    def put(self, message: Message) -> None:
        """Hand a processed message to the batcher."""
        self._inbox.put_nowait(message)

    async def start(self) -> None:
        """Spawn the task that cuts batches."""
        self.workers.spawn(self._run(), f"batcher:{self.config.name}")

    async def _drain(self) -> None:
        self._inbox.put_nowait(_FLUSH)
        await self._inbox.join()

    def _partition_of(self, message: Message) -> int:
        partition_by = self.config.partition_by
        if partition_by is None:
            return 0
        return partition(partition_by(message), len(self.outboxes))

    def _emit(self, key: tuple[int, Any], trigger: BatchTrigger) -> None:
        batch = self._pending.pop(key)
        self._deadlines.pop(key, None)
        info = BatchInfo(self.config.name, key[1], len(batch), trigger, key[0])
        self.outboxes[key[0]].put_nowait((batch, info))

    def _add(self, message: Message, now: float) -> Message | None:
        """Add ``message`` to its batch; returns it, failed, when it cannot be batched."""
        try:
            key = (self._partition_of(message), message.batch_key)
            batch = self._pending.get(key)  # raises TypeError for an unhashable batch_key
        except Exception as exc:
            return message.failed(exc)
        if batch is None:
            batch = self._pending[key] = []
            self._deadlines[key] = now + self.config.batch_timeout
        batch.append(message)
        if id(message) in self._flush_ids:
            self._flush_ids.discard(id(message))
            self._emit(key, "flush")
            return None
        try:
            full = batch_full(self.config.batch_size, batch)
        except Exception as exc:
            batch.pop()
            if not batch:
                del self._pending[key]
                del self._deadlines[key]
            return message.failed(exc)
        if full:
            self._emit(key, "size")
        return None

    async def _run(self) -> None:
        getter: asyncio.Future[Message | _Flush] | None = None
        try:
            while True:
                if getter is None:
                    getter = asyncio.ensure_future(self._inbox.get())
                deadlines = self._deadlines
                timeout = (
                    max(0.0, min(deadlines.values()) - time.monotonic()) if deadlines else None
                )
                done, _ = await asyncio.wait({getter}, timeout=timeout)
                now = time.monotonic()
                for key in [k for k, d in deadlines.items() if d <= now]:
                    self._emit(key, "timeout")
                if not done:
                    continue
                item, getter = getter.result(), None
                await self._take(item, now)
                while not self._inbox.empty():  # what else is waiting, without a wait each
                    await self._take(self._inbox.get_nowait(), now)
        finally:
            if getter is not None:
                getter.cancel()

    async def _take(self, item: Message | _Flush, now: float) -> None:
        try:
            if isinstance(item, _Flush):
                for key in list(self._pending):
                    self._emit(key, "flush")
            else:
                failed = self._add(item, now)
                if failed is not None:
                    await self._reject([failed])
        finally:
            self._inbox.task_done()
