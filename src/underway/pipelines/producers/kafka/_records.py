"""The raw records a :class:`KafkaProducer` keeps for dead-lettering, kept a fetch at a time.

A failed message sent to the dead-letter topic is published from its raw record (key,
value and headers as read). Only failures need them, so each fetch's records of a
partition are kept as they came, in one list (no work per record), and looked up by
offset when a message fails. A fetch's list is dropped once the partition's commit point
has passed its last offset: every message in it was settled by then.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterable
from typing import Any, TypeAlias

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

__all__ = ["KeptRecords"]

Record: TypeAlias = "ConsumerRecord[Any, Any]"


def _offset(record: Record) -> int:
    offset: int = record.offset
    return offset


class KeptRecords:
    """Fetched records by partition and generation, a fetch's list at a time."""

    def __init__(self) -> None:
        self._fetches: dict[tuple[TopicPartition, int], deque[list[Record]]] = {}

    def keep(
        self, tp: TopicPartition, generation: int, records: list[Record], point: int | None
    ) -> None:
        """Keep one fetch's ``records`` (increasing offsets); drop lists before ``point``.

        ``point`` is the partition's commit point before these records were added.
        """
        fetches = self._fetches.get((tp, generation))
        if fetches is None:
            fetches = self._fetches[(tp, generation)] = deque()
        elif point is not None:
            while fetches and fetches[0][-1].offset < point:
                fetches.popleft()
        if records:
            fetches.append(records)

    def find(self, tp: TopicPartition, generation: int, offset: int) -> Record | None:
        """The record at ``offset`` of ``tp`` in ``generation``, if still kept."""
        for records in self._fetches.get((tp, generation), ()):
            if records[0].offset <= offset <= records[-1].offset:
                i = bisect.bisect_left(records, offset, key=_offset)
                if i < len(records) and records[i].offset == offset:
                    return records[i]
        return None

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Drop every record of ``partitions`` (revoked, or assigned afresh)."""
        gone = set(partitions)
        for key in [key for key in self._fetches if key[0] in gone]:
            del self._fetches[key]

    def clear(self) -> None:
        """Drop everything (the producer closed)."""
        self._fetches.clear()

    def __len__(self) -> int:
        """Records kept (for tests)."""
        return sum(len(records) for fetches in self._fetches.values() for records in fetches)
