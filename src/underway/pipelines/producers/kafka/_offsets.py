"""Which offset a :class:`KafkaProducer` may commit: the contiguous settled prefix (pure).

Kafka commits one offset per partition, "everything before this is done", while a
pipeline settles messages out of order. Each partition this consumer owns has a
:class:`PartitionOffsets` that records the offsets handed to the pipeline and not yet
settled; the commit point is the lowest of them (the next offset to read, when none is
pending). A message that failed with ``on_failure="stop"`` stays pending for good, so the
commit point never passes it.

Each assignment of a partition gets a new generation: settlements that name an older one
(a partition revoked, perhaps assigned again since) are dropped, so a consumer never
commits for messages of a partition it no longer owns.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["OffsetTracker", "PartitionOffsets"]

P = TypeVar("P", bound=Hashable)


@dataclass
class PartitionOffsets:
    """The offsets of one partition, for one assignment of it (one generation).

    Attributes:
        generation: Which assignment these offsets belong to.
        committed: The last offset committed by this consumer in this generation.
        stopped: Offsets failed with ``on_failure="stop"``: pending for good.
    """

    generation: int
    committed: int | None = None
    stopped: set[int] = field(default_factory=set)
    _pending: set[int] = field(default_factory=set)
    _heap: list[int] = field(default_factory=list)
    _next: int | None = None

    def add(self, offset: int) -> None:
        """Record ``offset`` as handed to the pipeline (offsets come in increasing order)."""
        if offset in self._pending:
            return
        self._pending.add(offset)
        heapq.heappush(self._heap, offset)
        if self._next is None or offset >= self._next:
            self._next = offset + 1

    def settle(self, offset: int) -> bool:
        """Mark ``offset`` settled; returns whether it was pending."""
        if offset not in self._pending or offset in self.stopped:
            return False
        self._pending.discard(offset)
        while self._heap and self._heap[0] not in self._pending:
            heapq.heappop(self._heap)
        return True

    def stop(self, offset: int) -> bool:
        """Keep ``offset`` pending for good (a failure that stops the partition)."""
        if offset not in self._pending:
            return False
        self.stopped.add(offset)
        return True

    @property
    def in_flight(self) -> int:
        """Offsets handed out and neither settled nor stopped."""
        return len(self._pending) - len(self.stopped)

    def commit_point(self) -> int | None:
        """The offset to commit (the next one to read), or ``None`` when nothing was read."""
        if self._heap:
            return self._heap[0]
        return self._next

    def to_commit(self) -> int | None:
        """The commit point, when it is beyond what was committed; else ``None``."""
        point = self.commit_point()
        if point is None or (self.committed is not None and point <= self.committed):
            return None
        return point


class OffsetTracker(Generic[P]):
    """The :class:`PartitionOffsets` of every partition this consumer owns, by partition."""

    def __init__(self) -> None:
        self._partitions: dict[P, PartitionOffsets] = {}
        self._generation = 0

    def assign(self, partitions: Iterable[P]) -> None:
        """Start a new generation for each of ``partitions``."""
        for partition in partitions:
            self._generation += 1
            self._partitions[partition] = PartitionOffsets(self._generation)

    def revoke(self, partitions: Iterable[P]) -> None:
        """Forget ``partitions``: later settlements of their messages are dropped."""
        for partition in partitions:
            self._partitions.pop(partition, None)

    def get(self, partition: P, generation: int | None = None) -> PartitionOffsets | None:
        """The offsets of ``partition``, if owned (and of ``generation``, when given)."""
        state = self._partitions.get(partition)
        if state is None or (generation is not None and state.generation != generation):
            return None
        return state

    def __contains__(self, partition: object) -> bool:
        return partition in self._partitions

    @property
    def partitions(self) -> list[P]:
        """The partitions owned."""
        return list(self._partitions)

    def in_flight(self, partitions: Iterable[P] | None = None) -> int:
        """Messages handed out and not settled nor stopped (of ``partitions``, or all)."""
        chosen = self._partitions if partitions is None else partitions
        return sum(s.in_flight for p in chosen if (s := self._partitions.get(p)) is not None)

    def to_commit(self, partitions: Iterable[P] | None = None) -> dict[P, tuple[int, int]]:
        """``{partition: (offset, generation)}`` for every commit point that moved on."""
        chosen = list(self._partitions) if partitions is None else partitions
        points: dict[P, tuple[int, int]] = {}
        for partition in chosen:
            state = self._partitions.get(partition)
            if state is not None and (point := state.to_commit()) is not None:
                points[partition] = (point, state.generation)
        return points

    def committed(self, points: dict[P, tuple[int, int]]) -> None:
        """Record ``points`` (from :meth:`to_commit`) as committed, where still owned."""
        for partition, (offset, generation) in points.items():
            state = self.get(partition, generation)
            if state is not None and (state.committed is None or offset > state.committed):
                state.committed = offset
