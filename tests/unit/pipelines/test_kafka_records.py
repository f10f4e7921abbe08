"""Records kept for dead-lettering: found by offset until the commit point passes them."""

from __future__ import annotations

from typing import Any

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from underway.pipelines.producers.kafka._records import KeptRecords

A, B = TopicPartition("t", 0), TopicPartition("t", 1)


def _records(tp: TopicPartition, offsets: list[int]) -> list[ConsumerRecord[Any, Any]]:
    return [
        ConsumerRecord(tp.topic, tp.partition, o, 0, 0, None, str(o).encode(), None, 0, 1, ())
        for o in offsets
    ]


def test_found_by_partition_generation_and_offset() -> None:
    kept = KeptRecords()
    kept.keep(A, 1, _records(A, [0, 1, 2]), None)
    kept.keep(A, 1, _records(A, [5, 7, 9]), 0)  # gaps: a compacted log
    kept.keep(B, 2, _records(B, [0, 1]), None)
    found = kept.find(A, 1, 7)
    assert found is not None
    assert found.value == b"7"
    assert kept.find(A, 1, 6) is None  # not a record's offset
    assert kept.find(A, 2, 7) is None  # another generation
    assert kept.find(B, 2, 1) is not None
    assert kept.find(B, 2, 9) is None
    assert len(kept) == 8


def test_a_fetch_is_dropped_once_the_commit_point_passed_it() -> None:
    kept = KeptRecords()
    kept.keep(A, 1, _records(A, [0, 1, 2]), None)
    kept.keep(A, 1, _records(A, [3, 4]), 2)  # offset 2 still unsettled: both kept
    assert kept.find(A, 1, 2) is not None
    kept.keep(A, 1, _records(A, [5]), 3)  # everything before 3 settled
    assert kept.find(A, 1, 2) is None
    assert kept.find(A, 1, 3) is not None
    assert len(kept) == 3


def test_forget_and_clear() -> None:
    kept = KeptRecords()
    kept.keep(A, 1, _records(A, [0]), None)
    kept.keep(B, 1, _records(B, [0]), None)
    kept.forget([A])
    assert kept.find(A, 1, 0) is None
    assert kept.find(B, 1, 0) is not None
    kept.clear()
    assert len(kept) == 0
