"""Hands back jobs the database says this node runs but the node does not know of.

That happens when a claim committed but its reply never arrived (the connection dropped
at that instant): the rows say ``executing`` on a live node, so no lifeline would ever
rescue them. A job seen orphaned on two passes in a row is released to its queue.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from underway.jobs.engines.base import Engine
from underway.jobs.runtime._periodic import Periodic

__all__ = ["Reconciler"]

_log = logging.getLogger("underway.jobs")


class Reconciler(Periodic):
    """Every ``interval`` seconds, compares the node's jobs with the database's view."""

    name = "reconciler"

    def __init__(
        self,
        engine: Engine,
        *,
        node: str,
        interval: float,
        known: Callable[[], set[int]],
        wake: Callable[[], None],
    ) -> None:
        super().__init__(interval)
        self.engine = engine
        self.node = node
        self.known = known
        self.wake = wake
        self._suspects: set[int] = set()

    async def tick(self) -> None:
        """One comparison; release what was orphaned on the previous pass too."""
        claimed = set(await self.engine.executing(self.node))
        orphans = claimed - self.known()
        confirmed = orphans & self._suspects
        self._suspects = orphans - confirmed
        if confirmed:
            _log.warning(
                "node %s: %d job(s) claimed but never received; handing them back",
                self.node,
                len(confirmed),
            )
            await self.engine.release(sorted(confirmed), self.node, time.time())
            self.wake()
