"""The stages of a running pipeline, wired in flow order, started and stopped together."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

from underway.pipelines._handlers import Handlers
from underway.pipelines._policy import BatcherConfig, ProcessorsConfig
from underway.pipelines._topology.acker import Acker
from underway.pipelines._topology.batch_processor_stage import BatchProcessorStage
from underway.pipelines._topology.batcher_stage import BatcherStage
from underway.pipelines._topology.demand import Demand
from underway.pipelines._topology.processor_stage import ProcessorStage
from underway.pipelines._topology.producer_stage import ProducerStage
from underway.pipelines._topology.stage import Stage
from underway.pipelines._topology.workers import CancelBudget
from underway.pipelines.message import Message
from underway.pipelines.producers._protocol import Producer
from underway.pipelines.rate_limit import RateLimiter

__all__ = ["Topology"]

_log = logging.getLogger("underway.pipelines")


class Topology:
    """Producers -> processors -> batchers -> batch processors, with one :class:`Demand`.

    Built for one run of a pipeline: :meth:`start` starts the stages from the last to the
    producers (so whatever is fetched has somewhere to go), :meth:`stop` stops them in
    flow order, each drained before the next, within one bound. :meth:`hurry` cuts a
    stop short, now or when it comes: the stages stop without draining, and what was not
    settled stays with the broker.
    """

    def __init__(
        self,
        pipeline: str,
        *,
        producers: Sequence[Producer],
        producer_concurrency: int,
        processors: ProcessorsConfig,
        batchers: Mapping[str, BatcherConfig],
        handlers: Handlers,
        rate_limiter: RateLimiter | None,
        demand: Demand,
    ) -> None:
        self.pipeline = pipeline
        self.demand = demand
        self.hurried = asyncio.Event()
        self.flush_ids: set[int] = set()
        acker = Acker(handlers, demand, self.flush_ids)
        batcher_stages: dict[str, BatcherStage] = {}
        self._stages: list[Stage] = []
        for name, config in batchers.items():
            batcher = batcher_stages[name] = BatcherStage(
                pipeline,
                config,
                flush_ids=self.flush_ids,
                reject=acker.settle_batched,
                hurried=self.hurried,
            )
            batch_processors = BatchProcessorStage(
                pipeline,
                name,
                batcher.outboxes,
                concurrency=config.concurrency,
                handlers=handlers,
                acker=acker,
                hurried=self.hurried,
            )
            self._stages += [batcher, batch_processors]
        self.processors = ProcessorStage(
            pipeline,
            processors,
            handlers=handlers,
            demand=demand,
            acker=acker,
            batchers=batcher_stages,
            hurried=self.hurried,
        )
        self._stages.insert(0, self.processors)
        self.producers = ProducerStage(
            pipeline,
            producers,
            concurrency=producer_concurrency,
            demand=demand,
            rate_limiter=rate_limiter,
            admit=self.processors.admit,
        )

    async def start(self) -> None:
        """Start every stage, the producers last.

        A producer's ``prepare_for_start`` error is raised after the other stages were
        stopped again (and the producers already prepared were closed).
        """
        started: list[Stage] = []
        try:
            for stage in reversed(self._stages):
                await stage.start()
                started.append(stage)
            await self.producers.start()
        except BaseException:
            budget = CancelBudget()
            for stage in started:
                await stage.stop(0, budget=budget)
            raise

    def push(self, messages: Sequence[Message], *, flush: bool) -> None:
        """Hand ``messages`` straight to the processors (``flush``: batch each at once)."""
        if flush:
            self.flush_ids.update(id(m) for m in messages)
        self.processors.admit(list(messages))

    def hurry(self) -> None:
        """Stop draining: a stop in progress, or the next one, cancels at once."""
        self.hurried.set()

    async def stop(self, timeout: float | None = None) -> None:
        """Stop fetching, drain the stages in order within ``timeout``, close the producers.

        ``timeout`` bounds the drain of all stages together (``None``: no bound). The
        waits for cancelled workers that go on share one :class:`CancelBudget` too, so a
        handler that swallows its cancellation delays the stop by at most
        :data:`~underway.pipelines._topology.workers.CANCEL_BOUND` seconds, whatever the
        number of stages.

        If the caller is cancelled, the stages left are stopped without draining before
        the cancellation goes on.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        budget = CancelBudget()
        drained = True
        stopped = 0
        try:
            await self.producers.stop(budget=budget)
            for stage in self._stages:
                left = None if deadline is None else deadline - loop.time()
                await stage.stop(left, budget=budget)
                drained = drained and stage.drained
                stopped += 1
        finally:
            for stage in self._stages[stopped:]:
                await stage.stop(0, budget=budget)
            await self.producers.close()
        if not drained:
            _log.warning(
                "%s: %s with %d message(s) unfinished",
                self.pipeline,
                "stop hurried" if self.hurried.is_set() else "shutdown bound reached",
                self.demand.in_flight,
            )
