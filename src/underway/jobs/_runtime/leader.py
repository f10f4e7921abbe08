"""Leadership: one node at a time holds the ``leader`` lease and runs cluster-wide work."""

from __future__ import annotations

import logging
import time

from underway import _telemetry as telemetry
from underway.jobs._runtime.periodic import Periodic
from underway.jobs.engines.base import Engine

__all__ = ["Leader"]

_log = logging.getLogger("underway.jobs")
LEASE = "leader"


class Leader(Periodic):
    """Takes or renews the leader lease every ``ttl / 3`` seconds.

    Pruning, rescue and cron run on the leader only. A leader that cannot renew its lease
    steps down on its own once the lease would have expired, so two nodes never both act
    as leader for longer than a clock skew; when the leader dies another node takes over
    within ``ttl`` seconds.
    """

    name = "leader"
    backoff = False

    def __init__(self, engine: Engine, *, node: str, ttl: float) -> None:
        super().__init__(ttl / 3)
        self.engine = engine
        self.node = node
        self.ttl = ttl
        self._held_until = 0.0
        self.since: float | None = None

    @property
    def is_leader(self) -> bool:
        """Whether this node holds an unexpired lease."""
        return time.monotonic() < self._held_until

    async def tick(self) -> None:
        """Take or renew the lease."""
        was = self.is_leader
        started = time.monotonic()
        held = await self.engine.acquire_lease(LEASE, self.node, self.ttl, time.time())
        self._held_until = started + self.ttl if held else 0.0
        if held != was:
            self.since = time.time() if held else None
            _log.info("node %s %s leader", self.node, "became" if held else "is no longer")
            telemetry.emit(
                "leader.change", {"system_time": time.time()}, {"node": self.node, "leader": held}
            )

    async def stop(self, timeout: float | None = None) -> None:
        """Stop renewing and hand the lease over at once."""
        await super().stop(timeout)
        self._held_until = 0.0
        try:  # also when a cancelled tick took the lease without hearing back
            await self.engine.release_lease(LEASE, self.node)  # a no-op unless we hold it
        except Exception as exc:
            _log.warning("could not release the leader lease: %s", exc)
