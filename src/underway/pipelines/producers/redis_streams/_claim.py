"""Reclaiming stuck entries of a consumer group with ``XAUTOCLAIM``, a slice at a time."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from underway.pipelines.producers.redis_streams._ops import DeadLetter, Entry, StreamOps

_log = logging.getLogger("underway.pipelines.redis")

Bury = Callable[[list[DeadLetter]], tuple[list[str], list[DeadLetter]]]


class Reclaimer:
    """Takes over entries that any consumer left pending for ``claim_idle`` seconds.

    Each call scans the next slice of the pending entries list (``XAUTOCLAIM`` from a
    cursor); once a scan reaches the end, the next one starts ``claim_idle / 2`` seconds
    later. Entries claimed beyond ``max_deliveries`` are dead-lettered, not returned.

    Args:
        claim_idle: Seconds an entry must have been idle to be claimed.
        max_deliveries: Deliveries after which an entry is dead-lettered (``None``: never).
        held: The entries this consumer holds; never returned again while held.
        bury: Splits entries to dead-letter into ids to acknowledge and entries to move.
        owner: Names the producer in logs.
    """

    def __init__(
        self,
        claim_idle: float,
        max_deliveries: int | None,
        held: dict[str, Entry],
        bury: Bury,
        owner: str,
    ) -> None:
        self.claim_idle = claim_idle
        self.max_deliveries = max_deliveries
        self._held = held
        self._bury = bury
        self._owner = owner
        self._cursor = "0-0"
        self._due = 0.0
        self._busy = False

    def restart(self) -> None:
        """Scan from the start of the pending entries list at the next call."""
        self._cursor, self._due = "0-0", 0.0

    async def reclaim(self, ops: StreamOps, count: int) -> list[Entry]:
        """Claim up to ``count`` idle entries (none when a scan is not due, or under way)."""
        if self._busy or (self._cursor == "0-0" and time.monotonic() < self._due):
            return []
        self._busy = True
        try:
            cursor, claimed = await ops.autoclaim(
                round(self.claim_idle * 1000), self._cursor, count
            )
        finally:
            self._busy = False
        self._cursor = cursor
        if cursor == "0-0":
            self._due = time.monotonic() + self.claim_idle / 2
        held = [(i, self._held[i].deliveries) for i, _ in claimed if i in self._held]
        if held:
            _log.warning(
                "%s: %d message(s) held for longer than claim_idle (%.3g s); other consumers "
                "may take such messages: raise claim_idle",
                self._owner,
                len(held),
                self.claim_idle,
            )
            await ops.set_deliveries(held, None)  # undo the claim's delivery count
        claimed = [(i, fields) for i, fields in claimed if i not in self._held]
        deleted = [i for i, fields in claimed if fields is None]
        if deleted:
            await ops.settle(deleted, ())
        live = [(i, fields) for i, fields in claimed if fields is not None]
        if not live:
            return []
        counts = await ops.delivery_counts([i for i, _ in live])
        entries: list[Entry] = []
        dead: list[DeadLetter] = []
        limit = self.max_deliveries
        for (entry_id, fields), deliveries in zip(live, counts, strict=True):
            if deliveries is None:  # acknowledged since the claim
                continue
            entry = Entry(entry_id, fields, deliveries)
            if limit is not None and deliveries > limit:
                reason = f"delivered {deliveries - 1} times, max_deliveries is {limit}"
                dead.append(DeadLetter(entry, reason, deliveries - 1))
            else:
                entries.append(entry)
        if dead:
            await ops.settle(*self._bury(dead))
        return entries
