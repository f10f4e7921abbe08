"""The producers of a node's queues, started and stopped together as one component."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

from underway.jobs._runtime.producer import Producer
from underway.jobs.engines.base import Engine

__all__ = ["Queues"]

_log = logging.getLogger("underway.jobs")


class Queues:
    """Every producer of a node: they start together and stop together.

    A stop first makes every queue stop claiming, and only then gives running jobs their
    grace, so no queue claims a job while another is already draining. Coroutines still
    running after the grace are cancelled and their claims handed back to their queues;
    sync jobs whose thread still runs are waited for, or with :attr:`wait_for_threads`
    False left ``executing`` (counted in :attr:`left_running`).

    Attributes:
        grace: Seconds running jobs get when the queues stop.
        wait_for_threads: Whether a stop waits for sync jobs still running after the grace.
        handed_back: Claims ``(job id, attempt)`` the last stop handed back.
        left_running: Ids of the jobs the last stop left running in threads.
    """

    def __init__(
        self, producers: Mapping[str, Producer], *, engine: Engine, node: str, grace: float
    ) -> None:
        self.producers = producers
        self.engine = engine
        self.node = node
        self.grace = grace
        self.wait_for_threads = True
        self.handed_back: list[tuple[int, int]] = []
        self.left_running: list[int] = []

    async def start(self) -> None:
        """Start every producer."""
        for producer in self.producers.values():
            await producer.start()

    def hurry(self) -> None:
        """End the grace period of a stop at once (now or when it starts)."""
        for producer in self.producers.values():
            producer.hurry()

    async def stop(self, timeout: float | None = None) -> None:
        """Stop claiming on every queue, drain them all, hand back what was cut short.

        Args:
            timeout: The grace, in seconds (default :attr:`grace`).
        """
        grace = self.grace if timeout is None else timeout
        producers = list(self.producers.values())
        async with asyncio.TaskGroup() as group:
            for producer in producers:
                group.create_task(producer.stop_fetching())
        async with asyncio.TaskGroup() as group:
            for producer in producers:
                producer.wait_for_threads = self.wait_for_threads
                group.create_task(producer.stop(grace))
        self.handed_back = [claim for p in producers for claim in p.handed_back]
        self.left_running = [job_id for p in producers for job_id in p.left_running]
        if self.handed_back:
            await self._hand_back(self.handed_back)

    async def _hand_back(self, claims: list[tuple[int, int]]) -> None:
        _log.warning("handing %d unfinished job(s) back to their queues", len(claims))
        try:
            await self.engine.release(claims, self.node, time.time())
        except Exception as exc:
            _log.error("could not release unfinished jobs while stopping: %s", exc)
