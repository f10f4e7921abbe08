"""One named batcher: groups processed messages into batches for its batch processors."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Literal

from underway.pipelines._policy import BatcherConfig, batch_full, partition
from underway.pipelines.message import Message

__all__ = ["BatchInfo", "Batcher"]

BatchTrigger = Literal["size", "timeout", "flush"]


@dataclass(frozen=True)
class BatchInfo:
    """What a batch handler is told about its batch.

    Attributes:
        batcher: The batcher's name.
        batch_key: The ``batch_key`` every message of the batch shares.
        size: Messages in the batch.
        trigger: Why it was cut: ``"size"``, ``"timeout"`` or ``"flush"`` (draining, or a
            message pushed in flush mode).
        partition: Index of the batch processor it went to (``0`` without ``partition_by``).
    """

    batcher: str
    batch_key: Any
    size: int
    trigger: BatchTrigger
    partition: int = 0


class _Flush:
    """The marker a batcher's inbox receives when it must cut its batches now."""


FLUSH = _Flush()
Outbox = asyncio.Queue[tuple[list[Message], BatchInfo]]


class Batcher:
    """Cuts batches per ``(partition, batch_key)`` by size, timeout or flush.

    Messages arrive on :attr:`inbox`; cut batches go to ``outboxes[partition]``. A message
    that cannot be batched (its partition or ``batch_size`` function raised, its
    ``batch_key`` is unhashable) fails and is handed to ``reject`` in :meth:`run`.
    """

    def __init__(self, config: BatcherConfig, flush_ids: set[int]) -> None:
        self.config = config
        self.inbox: asyncio.Queue[Message | _Flush] = asyncio.Queue()
        count = config.concurrency if config.partition_by is not None else 1
        self.outboxes: list[Outbox] = [asyncio.Queue() for _ in range(count)]
        self._flush_ids = flush_ids
        self._pending: dict[tuple[int, Any], list[Message]] = {}
        self._deadlines: dict[tuple[int, Any], float] = {}

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

    async def run(self, reject: Any) -> None:
        """Cut batches until cancelled; ``await reject([message])`` settles a failed one."""
        getter: asyncio.Future[Message | _Flush] | None = None
        try:
            while True:
                if getter is None:
                    getter = asyncio.ensure_future(self.inbox.get())
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
                await self._take(item, now, reject)
                while not self.inbox.empty():  # what else is waiting, without a wait each
                    await self._take(self.inbox.get_nowait(), now, reject)
        finally:
            if getter is not None:
                getter.cancel()

    async def _take(self, item: Message | _Flush, now: float, reject: Any) -> None:
        try:
            if isinstance(item, _Flush):
                for key in list(self._pending):
                    self._emit(key, "flush")
            else:
                failed = self._add(item, now)
                if failed is not None:
                    await reject([failed])
        finally:
            self.inbox.task_done()

    async def join(self) -> None:
        """Flush every open batch and wait until all were handled."""
        self.inbox.put_nowait(FLUSH)
        await self.inbox.join()
        for outbox in self.outboxes:
            await outbox.join()
