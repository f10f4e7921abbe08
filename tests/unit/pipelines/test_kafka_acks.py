"""The Kafka acknowledger settles by partition and generation; mangled or stale acks drop."""

from __future__ import annotations

from aiokafka import TopicPartition

from underway.pipelines import Message
from underway.pipelines.producers.kafka._acks import Delivery, KafkaAcknowledger
from underway.pipelines.producers.kafka._offsets import OffsetTracker

A, B = TopicPartition("t", 0), TopicPartition("t", 1)


def acknowledger(
    *partitions: TopicPartition,
) -> tuple[KafkaAcknowledger, OffsetTracker[TopicPartition], list[int]]:
    """An acknowledger without dead letters over ``partitions``, its tracker, and the counts
    it reported settled."""
    tracker: OffsetTracker[TopicPartition] = OffsetTracker()
    tracker.assign(partitions)
    counts: list[int] = []

    def publish(deliveries: list[Delivery]) -> None:
        raise AssertionError("no dead letters here")

    acks = KafkaAcknowledger(
        tracker=tracker,
        on_failure="ack",
        dead_letter=False,
        publish=publish,
        stop_partition=lambda tp: None,
        settled=counts.append,
        owner="test",
    )
    return acks, tracker, counts


def _setup() -> tuple[KafkaAcknowledger, OffsetTracker[TopicPartition], list[int]]:
    return acknowledger(A, B)


def _message(acks: KafkaAcknowledger, tp: TopicPartition, offset: int, generation: int) -> Message:
    metadata = {
        "topic": tp.topic,
        "partition": tp.partition,
        "offset": offset,
        "generation": generation,
    }
    return Message(None, metadata, acks)


def _generation(tracker: OffsetTracker[TopicPartition], tp: TopicPartition) -> int:
    state = tracker.get(tp)
    assert state is not None
    return state.generation


def test_acks_of_several_partitions_settle_each_one() -> None:
    acks, tracker, counts = _setup()
    messages = []
    for tp in (A, B):
        state = tracker.get(tp)
        assert state is not None
        state.add_all(list(range(10)))
        messages += [_message(acks, tp, o, state.generation) for o in range(10)]
    acks.ack(messages[::2], [])  # interleaved: every other offset of each partition
    acks.ack(messages[1::2], [])
    assert counts == [10, 10]
    assert tracker.to_commit() == {
        A: (10, _generation(tracker, A)),
        B: (10, _generation(tracker, B)),
    }


def test_acks_of_an_older_generation_are_dropped() -> None:
    acks, tracker, counts = _setup()
    old = _generation(tracker, A)
    tracker.revoke([A])
    tracker.assign([A])
    state = tracker.get(A)
    assert state is not None
    state.add_all([0, 1])
    acks.ack([_message(acks, A, 0, old), _message(acks, A, 1, state.generation)], [])
    assert counts == [1]
    assert state.commit_point() == 0  # offset 0 of this generation is still in flight


def test_mangled_metadata_is_not_acknowledged() -> None:
    acks, tracker, counts = _setup()
    state = tracker.get(A)
    assert state is not None
    state.add_all([0, 1, 2, 3, 4])
    generation = state.generation
    missing = _message(acks, A, 0, generation)
    del missing.metadata["offset"]
    wrong_offset = _message(acks, A, 1, generation)
    wrong_offset.metadata["offset"] = "1"
    unhashable = _message(acks, A, 2, generation)
    unhashable.metadata["topic"] = ["t"]
    wrong_partition = _message(acks, A, 3, generation)
    wrong_partition.metadata["partition"] = "0"
    good = _message(acks, A, 4, generation)
    acks.ack([missing, wrong_offset, unhashable, wrong_partition, good], [])
    assert counts == [1]
    assert state.in_flight == 4
    assert state.commit_point() == 0


def test_a_dead_letter_is_the_record_as_read_while_unsettled() -> None:
    tracker: OffsetTracker[TopicPartition] = OffsetTracker()
    tracker.assign([A])
    state = tracker.get(A)
    assert state is not None
    state.add_all([0, 1, 2, 3])
    published: list[Delivery] = []
    acks = KafkaAcknowledger(
        tracker=tracker,
        on_failure="dead_letter",
        dead_letter=True,
        publish=published.extend,
        stop_partition=lambda tp: None,
        settled=lambda count: None,
        owner="test",
    )
    generation = state.generation
    failing = _message(acks, A, 0, generation).failed("boom")
    failing.data = b"raw"
    failing.metadata.update(key=b"k", headers=[("h", b"1")])
    settled = _message(acks, A, 1, generation).failed("boom")
    decoded = _message(acks, A, 2, generation).failed("boom")
    decoded.data = {"no longer": "bytes"}  # a copy whose raw value is gone
    acks.settle((A, generation, 1))  # settled already: no dead letter
    acks.ack([], [failing, settled, decoded])
    [delivery] = published
    assert (delivery.tp, delivery.reason) == (A, "boom")
    record = delivery.record
    assert (record.offset, record.key, record.value, record.headers) == (
        0,
        b"k",
        b"raw",
        [("h", b"1")],
    )
    assert state.commit_point() == 0  # settled only once the dead letter is published
    assert state.unsettled(2)  # not dead-lettered: read again, never committed past
