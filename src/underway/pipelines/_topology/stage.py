"""What every consuming stage shares: its workers, and a stop that drains first."""

from __future__ import annotations

import abc
import asyncio

from underway.pipelines._topology.workers import CancelBudget, Workers

__all__ = ["Stage"]


class Stage(abc.ABC):
    """A stage between the producers and the acker, with the lifecycle of every stage.

    :meth:`start` spawns its workers; :meth:`stop` waits until what the stage holds has
    gone through (up to ``timeout`` seconds, or until the topology is hurried), then
    cancels the workers. Messages a worker had not finished stay unsettled: the broker
    still has them.

    Attributes:
        drained: Whether the last :meth:`stop` drained the stage before cancelling.
    """

    def __init__(self, pipeline: str, hurried: asyncio.Event) -> None:
        self.workers = Workers(pipeline)
        self.drained = False
        self._hurried = hurried

    @abc.abstractmethod
    async def start(self) -> None:
        """Spawn the stage's workers."""

    @abc.abstractmethod
    async def _drain(self) -> None:
        """Return once every message the stage holds has left it."""

    async def stop(
        self, timeout: float | None = None, *, budget: CancelBudget | None = None
    ) -> None:
        """Drain within ``timeout`` seconds (``None``: no bound), then cancel the workers.

        ``budget`` bounds the wait for cancelled workers that go on (see
        :meth:`Workers.cancel`). :attr:`drained` tells afterwards whether the bound or a
        hurry cut the drain short.
        """
        self.drained = False
        try:
            self.drained = await self._drained_within(timeout)
        finally:
            await self.workers.cancel(budget)

    async def _drained_within(self, timeout: float | None) -> bool:
        if self._hurried.is_set() or (timeout is not None and timeout <= 0):
            return False
        loop = asyncio.get_running_loop()
        drain = loop.create_task(self._drain(), name=f"{self.workers.pipeline}:drain")
        hurry = loop.create_task(self._hurried.wait(), name=f"{self.workers.pipeline}:hurry")
        try:
            await asyncio.wait({drain, hurry}, timeout=timeout, return_when="FIRST_COMPLETED")
        finally:
            for task in (drain, hurry):
                task.cancel()
            await asyncio.wait({drain, hurry})
        return drain.done() and not drain.cancelled() and drain.exception() is None
