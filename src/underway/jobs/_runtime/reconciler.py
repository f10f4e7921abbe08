"""Hands back claims the database says this node holds but the node does not know of.

That happens when a claim committed but its reply never arrived (the connection dropped
at that instant): the rows say ``executing`` on a live node, so no lifeline would ever
rescue them. A claim is one attempt of one job. A claim seen orphaned on two passes in a
row is released to its queue, unless its job runs on this node (then the run holds the
claim: see :class:`~underway.jobs._runtime.producer.Producer`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from underway.jobs._runtime.periodic import Periodic
from underway.jobs.engines.base import Engine

__all__ = ["Reconciler", "orphaned"]

_log = logging.getLogger("underway.jobs")

Claim = tuple[int, int]


def orphaned(claimed: set[Claim], running: set[int], acking: set[Claim]) -> set[Claim]:
    """The claims of ``claimed`` that no run of this node holds and no pending ack settles.

    Args:
        claimed: ``(job id, attempt)`` the database records as executing on this node.
        running: Ids of the jobs running on this node (any attempt).
        acking: Claims whose ack is buffered or being written.
    """
    return {c for c in claimed if c[0] not in running and c not in acking}


class Reconciler(Periodic):
    """Every ``interval`` seconds, compares the node's claims with the database's view."""

    name = "reconciler"

    def __init__(
        self,
        engine: Engine,
        *,
        node: str,
        interval: float,
        running: Callable[[], set[int]],
        acking: Callable[[], set[Claim]],
        wake: Callable[[], None],
    ) -> None:
        super().__init__(interval)
        self.engine = engine
        self.node = node
        self.running = running
        self.acking = acking
        self.wake = wake
        self._suspects: set[Claim] = set()

    async def tick(self) -> None:
        """One comparison; release what was orphaned on the previous pass too."""
        claimed = set(await self.engine.executing(self.node))
        orphans = orphaned(claimed, self.running(), self.acking())
        confirmed = orphans & self._suspects
        self._suspects = orphans - confirmed
        if confirmed:
            _log.warning(
                "node %s: %d claim(s) committed but never received (a lost reply); "
                "handing them back",
                self.node,
                len(confirmed),
            )
            await self.engine.release(sorted(confirmed), self.node, time.time())
            self.wake()
