"""The producer stage: fetch loops that ask producers for what the demand allows."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from underway.pipelines._handlers import maybe_await
from underway.pipelines._policy import shares
from underway.pipelines._topology.demand import Demand
from underway.pipelines._topology.workers import CancelBudget, Workers
from underway.pipelines.message import Message
from underway.pipelines.producers._protocol import Producer
from underway.pipelines.rate_limit import RateLimiter

__all__ = ["ProducerStage"]

_log = logging.getLogger("underway.pipelines")

FETCH_RETRY = 0.1
"""Seconds a fetch loop waits after its producer's ``fetch`` raised."""


class ProducerStage:
    """``concurrency`` fetch loops per producer, sharing the demand and the rate limit.

    The processors' capacity is split among the loops
    (:func:`~underway.pipelines._policy.shares`), so loops blocked on an idle broker never
    hold all of it. A loop reserves what it asks for before it waits (for the rate
    limiter, then the fetch), so the other loops see it.

    Lifecycle: :meth:`start` prepares the producers and spawns the loops, :meth:`stop`
    tells them the pipeline drains and cancels the loops, and :meth:`close` closes them
    once the other stages are done.
    """

    def __init__(
        self,
        pipeline: str,
        producers: Sequence[Producer],
        *,
        concurrency: int,
        demand: Demand,
        rate_limiter: RateLimiter | None,
        admit: Callable[[list[Message]], None],
    ) -> None:
        self.pipeline = pipeline
        self.producers = list(producers)
        self.concurrency = concurrency
        self._demand = demand
        self._rate_limiter = rate_limiter
        self._admit = admit
        self._warned: set[int] = set()
        self._draining = False
        self.workers = Workers(pipeline)

    async def start(self) -> None:
        """Call each producer's ``prepare_for_start``, then spawn the fetch loops.

        A hook's error is raised after the producers already prepared were closed.
        """
        prepared: list[Producer] = []
        try:
            for producer in self.producers:
                await _hook(producer, "prepare_for_start", self._demand.capacity)
                prepared.append(producer)
        except BaseException:
            for producer in prepared:
                await self._guarded_hook(producer, "close")
            raise
        loops = [p for p in self.producers for _ in range(self.concurrency)]
        parts = shares(self._demand.processors.capacity, len(loops))
        for i, (producer, share) in enumerate(zip(loops, parts, strict=True)):
            self.workers.spawn(self._run(producer, share), f"producer:{i}")

    async def stop(
        self, timeout: float | None = None, *, budget: CancelBudget | None = None
    ) -> None:
        """Stop fetching: ``prepare_for_draining`` on each producer, then cancel the loops.

        ``timeout`` is not used: nothing is drained here (messages a cancelled fetch had
        not returned stay with the broker). ``budget`` bounds the wait for cancelled loops
        that go on (see :meth:`Workers.cancel`).
        """
        self._draining = True
        for producer in self.producers:
            await self._guarded_hook(producer, "prepare_for_draining")
        await self.workers.cancel(budget)

    async def close(self) -> None:
        """Call each producer's ``close`` (its error is logged)."""
        for producer in self.producers:
            await self._guarded_hook(producer, "close")

    async def _guarded_hook(self, producer: Producer, name: str) -> None:
        try:
            await _hook(producer, name)
        except Exception:
            _log.exception("%s: %s() of producer %r failed", self.pipeline, name, producer)

    async def _run(self, producer: Producer, share: int) -> None:
        demand = self._demand
        while not self._draining:
            wanted = demand.wanted(share)
            if wanted <= 0:
                await demand.wait_for_room()
                continue
            demand.reserve(wanted)  # before any wait, so other loops see it
            try:
                if self._rate_limiter is not None:
                    granted = await self._rate_limiter.acquire(wanted)
                    demand.release(wanted - granted)
                    wanted = granted
                messages = await producer.fetch(wanted)
            except Exception:
                _log.exception("%s: producer %r failed to fetch", self.pipeline, producer)
                await asyncio.sleep(FETCH_RETRY)
                continue
            finally:
                demand.release(wanted)  # what was reserved and not filled is free again
            if len(messages) > wanted:
                self._overfed(producer, len(messages), wanted)
            if messages:
                self._admit(list(messages))
            # The processors hold them now: kept here they would outlive their settling,
            # until the next fetch returned.
            del messages

    def _overfed(self, producer: Producer, got: int, wanted: int) -> None:
        """Warn (once per producer) that ``fetch`` returned more than it was asked for.

        The messages are processed all the same (dropping them would lose them), but the
        pipeline then holds more than its capacity.
        """
        if id(producer) in self._warned:
            return
        self._warned.add(id(producer))
        _log.warning(
            "%s: producer %r returned %d message(s) when asked for %d; fetch must return "
            "at most the demand, or the pipeline holds more than its capacity",
            self.pipeline,
            producer,
            got,
            wanted,
        )


async def _hook(producer: Producer, name: str, *args: Any) -> None:
    hook = getattr(producer, name, None)
    if hook is not None:
        await maybe_await(hook(*args))
