"""Node heartbeats, and the rescue of jobs whose node stopped heartbeating."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping

from underway import _telemetry as telemetry
from underway.jobs.engines.base import Engine
from underway.jobs.runtime._periodic import Periodic

__all__ = ["Heartbeat", "Lifeline"]


class Heartbeat(Periodic):
    """Records every ``interval`` seconds that this node is alive."""

    name = "heartbeat"
    backoff = False  # a late heartbeat gets a live node's jobs rescued: never wait longer

    def __init__(
        self, engine: Engine, *, node: str, interval: float, queues: Callable[[], Mapping[str, int]]
    ) -> None:
        super().__init__(interval)
        self.engine = engine
        self.node = node
        self.queues = queues

    async def tick(self) -> None:
        """Write one heartbeat."""
        meta = {"host": socket.gethostname(), "pid": os.getpid(), "queues": dict(self.queues())}
        await self.engine.heartbeat(self.node, time.time(), meta)


class Lifeline(Periodic):
    """Rescues executing jobs of nodes silent for ``rescue_after`` seconds.

    A job is never rescued while its node still heartbeats, however long it runs. Rescued
    jobs go back to ``available`` (or ``discarded`` when out of attempts), with the rescue
    noted in their errors.
    """

    name = "lifeline"

    def __init__(
        self,
        engine: Engine,
        *,
        node: str,
        interval: float,
        rescue_after: float,
        wake: Callable[[str], None],
        enabled: Callable[[], bool] | None = None,
    ) -> None:
        super().__init__(interval, enabled=enabled)
        self.engine = engine
        self.node = node
        self.rescue_after = rescue_after
        self.wake = wake

    async def tick(self) -> None:
        """One rescue pass."""
        now = time.time()
        with telemetry.span("rescue", {"node": self.node}) as extra:
            rescued = await self.engine.rescue(now - self.rescue_after, now)
            extra["count"] = sum(rescued.values())
        for queue in rescued:
            self.wake(queue)
