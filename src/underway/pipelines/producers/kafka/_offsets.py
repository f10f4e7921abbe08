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

import bisect
import operator
from collections.abc import Hashable, Iterable
from typing import Any, Generic, TypeVar

__all__ = ["OffsetTracker", "PartitionOffsets"]

P = TypeVar("P", bound=Hashable)


_PENDING = 0
_SETTLED = 1
_STOPPED = 2
# Settled entries at the front are dropped once there are this many and they are at least
# half of what is held (so a long run of unsettled work is not copied over and over).
_COMPACT = 1024


class PartitionOffsets:
    """The offsets of one partition, for one assignment of it (one generation).

    Offsets handed out are kept in increasing order, each with its state (pending,
    settled, stopped), from the first one not settled on: the commit point is the first
    of them, and settling in order (the usual case) only moves it on. Offsets normally
    come in increasing order; one that does not is inserted in its place.

    Attributes:
        generation: Which assignment these offsets belong to.
        partition: The partition they are of (as the tracker names it).
        committed: The last offset committed by this consumer in this generation.
    """

    __slots__ = (
        "_head",
        "_in_flight",
        "_next",
        "_offsets",
        "_states",
        "committed",
        "generation",
        "partition",
    )

    def __init__(
        self, generation: int, committed: int | None = None, partition: Any = None
    ) -> None:
        self.generation = generation
        self.committed = committed
        self.partition = partition
        self._offsets: list[int] = []  # increasing; those before _head are settled
        self._states = bytearray()  # the state of each of _offsets
        self._head = 0  # index of the first offset not settled
        self._next: int | None = None  # one past the highest offset added
        self._in_flight = 0

    def __repr__(self) -> str:
        return (
            f"<PartitionOffsets generation={self.generation} committed={self.committed} "
            f"point={self.commit_point()} in_flight={self._in_flight}>"
        )

    def add(self, offset: int) -> None:
        """Record ``offset`` as handed to the pipeline (offsets come in increasing order)."""
        offsets = self._offsets
        if not offsets or offset > offsets[-1]:
            offsets.append(offset)
            self._states.append(_PENDING)
            self._in_flight += 1
            if self._next is None or offset >= self._next:
                self._next = offset + 1
            return
        self._insert(offset)

    def add_all(self, offsets: list[int]) -> None:
        """:meth:`add` each of ``offsets``, in one step when they extend what is held."""
        if not offsets:
            return
        held = self._offsets
        if (not held or offsets[0] > held[-1]) and all(map(operator.lt, offsets, offsets[1:])):
            held.extend(offsets)
            self._states.extend(bytes(len(offsets)))  # _PENDING is 0
            self._in_flight += len(offsets)
            if self._next is None or offsets[-1] >= self._next:
                self._next = offsets[-1] + 1
            return
        for offset in offsets:
            self.add(offset)

    def _insert(self, offset: int) -> None:
        offsets, states = self._offsets, self._states
        i = bisect.bisect_left(offsets, offset)
        if i < len(offsets) and offsets[i] == offset:
            if states[i] != _SETTLED:
                return  # handed out already
            states[i] = _PENDING  # handed out again after it was settled
        else:
            offsets.insert(i, offset)
            states.insert(i, _PENDING)
            if i < self._head:
                self._head += 1
        self._head = min(self._head, i)
        self._in_flight += 1
        if self._next is None or offset >= self._next:
            self._next = offset + 1

    def _find(self, offset: int) -> int:
        """The index of ``offset`` at or after the head, or -1 when it is not held there."""
        offsets = self._offsets
        head = self._head
        n = len(offsets)
        if head >= n:
            return -1
        i = head + offset - offsets[head]  # right when offsets are contiguous
        if head <= i < n and offsets[i] == offset:
            return i
        i = bisect.bisect_left(offsets, offset, head)
        if i < n and offsets[i] == offset:
            return i
        return -1

    def settle(self, offset: int) -> bool:
        """Mark ``offset`` settled; returns whether it was pending."""
        i = self._find(offset)
        states = self._states
        if i < 0 or states[i] != _PENDING:
            return False
        states[i] = _SETTLED
        self._in_flight -= 1
        if i == self._head:
            self._advance()
        return True

    def settle_all(self, offsets: Iterable[int]) -> int:
        """:meth:`settle` each of ``offsets``; returns how many were pending."""
        held, states = self._offsets, self._states
        if type(offsets) is list and self._settle_head(offsets):
            return len(offsets)
        count = 0
        for offset in offsets:  # _find and settle inlined: this runs for every message
            head = self._head
            n = len(held)
            if head >= n:
                continue
            i = head + offset - held[head]
            if not (head <= i < n and held[i] == offset):
                i = bisect.bisect_left(held, offset, head)
                if i >= n or held[i] != offset:
                    continue
            if states[i] != _PENDING:
                continue
            states[i] = _SETTLED
            count += 1
            if i == head:  # the commit point moves on (as in _advance)
                head += 1
                while head < n and states[head] == _SETTLED:
                    head += 1
                if head == n:
                    held.clear()
                    states.clear()
                    head = 0
                elif head >= _COMPACT and 2 * head >= n:
                    del held[:head]
                    del states[:head]
                    head = 0
                self._head = head
        self._in_flight -= count
        return count

    def _settle_head(self, offsets: list[int]) -> bool:
        """Settle ``offsets`` in one step if they are exactly the pending run at the head.

        The usual case (a partition's messages settled in order, a chunk at a time); the
        comparisons run in C. Returns ``False``, changing nothing, otherwise.
        """
        head = self._head
        end = head + len(offsets)
        states = self._states
        if (
            not offsets
            or end > len(states)
            or self._offsets[head:end] != offsets
            or states.count(_PENDING, head, end) != len(offsets)
        ):
            return False
        states[head:end] = bytes([_SETTLED]) * len(offsets)
        self._in_flight -= len(offsets)
        self._head = end - 1
        self._advance()
        return True

    def _advance(self) -> None:
        states = self._states
        n = len(states)
        head = self._head + 1
        while head < n and states[head] == _SETTLED:
            head += 1
        if head == n:
            self._offsets.clear()
            states.clear()
            head = 0
        elif head >= _COMPACT and 2 * head >= n:
            del self._offsets[:head]
            del states[:head]
            head = 0
        self._head = head

    def stop(self, offset: int) -> bool:
        """Keep ``offset`` pending for good (a failure that stops the partition)."""
        i = self._find(offset)
        if i < 0 or self._states[i] == _SETTLED:
            return False
        if self._states[i] == _PENDING:
            self._states[i] = _STOPPED
            self._in_flight -= 1
        return True

    def unsettled(self, offset: int) -> bool:
        """Whether ``offset`` was handed out and not settled (in flight, or stopped)."""
        i = self._find(offset)
        return i >= 0 and self._states[i] != _SETTLED

    @property
    def stopped(self) -> set[int]:
        """Offsets failed with ``on_failure="stop"``: pending for good."""
        head = self._head
        return {
            o
            for o, s in zip(self._offsets[head:], self._states[head:], strict=True)
            if s == _STOPPED
        }

    @property
    def in_flight(self) -> int:
        """Offsets handed out and neither settled nor stopped."""
        return self._in_flight

    def commit_point(self) -> int | None:
        """The offset to commit (the next one to read), or ``None`` when nothing was read."""
        if self._head < len(self._offsets):
            return self._offsets[self._head]
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
            self._partitions[partition] = PartitionOffsets(self._generation, partition=partition)

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
