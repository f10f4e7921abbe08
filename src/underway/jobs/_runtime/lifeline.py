"""Node heartbeats, and the rescue of jobs whose node stopped heartbeating."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from underway import __version__
from underway import _telemetry as telemetry
from underway.jobs._runtime.periodic import Periodic
from underway.jobs.engines.base import Engine

__all__ = ["Heartbeat", "Lifeline"]

_MIN_TIMEOUT = 0.5  # seconds: the least time one heartbeat is given


class Heartbeat(Periodic):
    """Records every ``interval`` seconds that this node is alive.

    It also knows for how long this node has reached the database without a break
    (:meth:`connected_for`): the evidence a rescuer needs before it judges other nodes.
    """

    name = "heartbeat"
    backoff = False  # a late heartbeat gets a live node's jobs rescued: never wait longer

    def __init__(
        self,
        engine: Engine,
        *,
        node: str,
        interval: float,
        queues: Callable[[], Mapping[str, int]],
        workers: Callable[[], Iterable[str]] = tuple,
        running: Callable[[], Mapping[str, int]] = dict,
        paused: Callable[[], Iterable[str]] = tuple,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(interval)
        self.engine = engine
        self.node = node
        self.queues = queues
        self.workers = workers
        self.running = running
        self.paused = paused
        self.clock = clock
        self._connected_since: float | None = None
        self._last_beat: float | None = None
        # Beats further apart than this (a stalled loop, writes slow enough to time out)
        # are no evidence that the database was reachable in between.
        self._max_gap = 3 * interval

    def meta(self) -> dict[str, Any]:
        """What a heartbeat records besides the time: host, pid, version, each queue's limit
        (``queues``), jobs running (``running``) and whether it is paused (``paused``, the
        paused queues), and the workers."""
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "version": __version__,
            "queues": dict(self.queues()),
            "running": dict(self.running()),
            "paused": sorted(self.paused()),
            "workers": sorted(self.workers()),
        }

    async def start(self) -> None:
        """Write the first heartbeat, then beat every ``interval`` seconds.

        The first write has no timeout and its failure fails the start: the lifelines of
        other nodes must see this node before it claims a job.
        """
        if self._task is None:
            await self.engine.heartbeat(self.node, time.time(), self.meta())
            self.beat()
        await super().start()

    async def tick(self) -> None:
        """Write one heartbeat; a failure breaks the run of connected time.

        A heartbeat that takes longer than an interval (at least half a second) is given
        up: a write stuck on a connection that died silently must not keep the node quiet
        after the database is back, while the next one, on a new connection, goes through.
        """
        try:
            async with asyncio.timeout(max(self.interval, _MIN_TIMEOUT)):
                await self.engine.heartbeat(self.node, time.time(), self.meta())
        except BaseException:
            self._connected_since = None
            raise
        self.beat()

    def beat(self) -> None:
        """Note a heartbeat written now (by :meth:`tick` or by the node at start)."""
        now = self.clock()
        if self._last_beat is None or now - self._last_beat > self._max_gap:
            self._connected_since = None
        if self._connected_since is None:
            self._connected_since = now
        self._last_beat = now

    def connected_for(self) -> float:
        """Seconds this node has heartbeated without a failure or a gap (0 if it has not)."""
        if self._connected_since is None or self._last_beat is None:
            return 0.0
        if self.clock() - self._last_beat > self._max_gap:
            return 0.0
        return self.clock() - self._connected_since


class Lifeline(Periodic):
    """Rescues executing jobs of nodes silent for ``rescue_after`` seconds.

    A job is never rescued while its node still heartbeats, however long it runs. Silence
    counts only while the database could be reached: the lifeline judges other nodes only
    once its own node has heartbeated without a break for ``rescue_after`` (see
    :meth:`Heartbeat.connected_for`). After an outage nobody could heartbeat through, live
    nodes thus get the time to reconnect and heartbeat before anyone is judged. Rescued
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
        connected_for: Callable[[], float],
        enabled: Callable[[], bool] | None = None,
    ) -> None:
        super().__init__(interval, enabled=enabled)
        self.engine = engine
        self.node = node
        self.rescue_after = rescue_after
        self.wake = wake
        self.connected_for = connected_for

    async def tick(self) -> None:
        """One rescue pass, if this node has been connected long enough to judge."""
        if self.connected_for() < self.rescue_after:
            return
        now = time.time()
        with telemetry.span("rescue", {"node": self.node}) as extra:
            rescued = await self.engine.rescue(now - self.rescue_after, now)
            extra["count"] = sum(rescued.values())
        for queue in rescued:
            self.wake(queue)
