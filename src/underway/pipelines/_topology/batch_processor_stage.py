"""The batch processor stage: ``handle_batch`` on the batches one batcher cut."""

from __future__ import annotations

import asyncio

from underway.pipelines._handlers import Handlers
from underway.pipelines._topology.acker import Acker
from underway.pipelines._topology.batcher_stage import Outbox
from underway.pipelines._topology.stage import Stage
from underway.pipelines.message import BatchInfo, Message

__all__ = ["BatchProcessorStage"]


class BatchProcessorStage(Stage):
    """``concurrency`` batch processors of the batcher called ``batcher``.

    Processor ``i`` takes batches from ``outboxes[i % len(outboxes)]``: with one outbox
    they share it, with one per partition each partition's batches keep their order.
    """

    def __init__(
        self,
        pipeline: str,
        batcher: str,
        outboxes: list[Outbox],
        *,
        concurrency: int,
        handlers: Handlers,
        acker: Acker,
        hurried: asyncio.Event,
    ) -> None:
        super().__init__(pipeline, hurried)
        self.batcher = batcher
        self._outboxes = outboxes
        self._concurrency = concurrency
        self._handlers = handlers
        self._acker = acker

    async def start(self) -> None:
        """Spawn the batch processors."""
        outboxes = self._outboxes
        for i in range(self._concurrency):
            outbox = outboxes[i % len(outboxes)]
            self.workers.spawn(self._run(outbox), f"batch_processor:{self.batcher}:{i}")

    async def _drain(self) -> None:
        for outbox in self._outboxes:
            await outbox.join()

    async def _run(self, outbox: Outbox) -> None:
        while True:
            batch, info = await outbox.get()
            try:
                await self._process(batch, info)
            finally:
                outbox.task_done()

    async def _process(self, batch: list[Message], info: BatchInfo) -> None:
        await self._handlers.batch(batch, info)
        await self._acker.settle_batched(batch)
