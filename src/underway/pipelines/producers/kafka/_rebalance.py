"""What a :class:`KafkaProducer` does when the group rebalances."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition

from underway.pipelines.producers.kafka._offsets import OffsetTracker

__all__ = ["Rebalance"]

_log = logging.getLogger("underway.pipelines.kafka")

#: Seconds between looks at the in-flight count of revoked partitions.
_POLL = 0.02


class Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Hands revoked partitions over cleanly, and starts a generation for assigned ones.

    On revoke: fetching the partitions stops at once, their messages in flight get up to
    ``revoke_timeout`` seconds to be settled, what is contiguous is committed, then the
    partitions are forgotten (a later settlement of one of their messages is dropped:
    the next owner reads it again). aiokafka awaits this before the group moves on.

    Args:
        tracker: The offsets of the partitions owned.
        revoking: Called first with the revoked partitions (stop fetching them).
        commit: Commits the commit points of the given partitions.
        forget: Called last with the revoked partitions (drop what is kept for them).
        assigned: Called with newly assigned partitions, after the tracker knows them.
        revoke_timeout: Seconds the messages in flight are given.
        closing: Whether the producer is closing (then nothing is waited for).
    """

    def __init__(
        self,
        tracker: OffsetTracker[TopicPartition],
        *,
        revoking: Callable[[set[TopicPartition]], None],
        commit: Callable[[set[TopicPartition]], Awaitable[Any]],
        forget: Callable[[set[TopicPartition]], None],
        assigned: Callable[[set[TopicPartition]], None],
        revoke_timeout: float,
        closing: Callable[[], bool],
    ) -> None:
        self._tracker = tracker
        self._revoking = revoking
        self._commit = commit
        self._forget = forget
        self._assigned = assigned
        self._revoke_timeout = revoke_timeout
        self._closing = closing

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Stop fetching, let in-flight messages finish (bounded), commit, forget."""
        owned = {tp for tp in revoked if tp in self._tracker}
        if not owned:
            return
        self._revoking(owned)
        deadline = time.monotonic() + self._revoke_timeout
        while self._tracker.in_flight(owned) and not self._closing():
            if time.monotonic() >= deadline:
                _log.warning(
                    "%d message(s) of revoked partitions still in flight after %.3g s: "
                    "their next owner reads them again",
                    self._tracker.in_flight(owned),
                    self._revoke_timeout,
                )
                break
            await asyncio.sleep(_POLL)
        try:
            await self._commit(owned)
        finally:
            self._tracker.revoke(owned)
            self._forget(owned)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """Start a new generation for each assigned partition."""
        self._tracker.assign(assigned)
        self._assigned(set(assigned))
