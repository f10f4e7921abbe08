"""Kafka messages are made cheaply from records and acknowledged through their record."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from underway.errors import DecodeError
from underway.pipelines import Message
from underway.pipelines.producers.kafka._acks import KafkaAcknowledger, raw_record
from underway.pipelines.producers.kafka._message import KafkaMessage, kafka_messages
from underway.pipelines.producers.kafka._offsets import OffsetTracker, PartitionOffsets

from .test_kafka_acks import acknowledger

TP = TopicPartition("orders", 3)


def _record(offset: int, value: bytes | None = b"v", headers: Any = ()) -> ConsumerRecord[Any, Any]:
    return ConsumerRecord(
        topic=TP.topic,
        partition=TP.partition,
        offset=offset,
        timestamp=1_700_000_000_000 + offset,
        timestamp_type=0,
        key=b"k%d" % offset,
        value=value,
        checksum=None,
        serialized_key_size=2,
        serialized_value_size=1,
        headers=headers,
    )


def _setup() -> tuple[KafkaAcknowledger, OffsetTracker[TopicPartition], PartitionOffsets]:
    acks, tracker, _ = acknowledger(TP)
    state = tracker.get(TP)
    assert state is not None
    return acks, tracker, state


def _read(state: PartitionOffsets, acks: KafkaAcknowledger, records: list[Any]) -> list[Message]:
    return kafka_messages(list(records), state, acks, None)


def test_a_message_shows_its_record_as_metadata_and_data() -> None:
    acks, _, state = _setup()
    (message,) = _read(state, acks, [_record(7, headers=[("h", b"1")])])
    assert isinstance(message, Message)
    assert message.data == b"v"
    assert message.ordering_key == ("orders", 3)
    assert message.acknowledger is acks
    assert (message.batcher, message.status, message.acked, message.reason) == (
        None,
        "ok",
        False,
        None,
    )
    assert message.metadata == {
        "topic": "orders",
        "partition": 3,
        "offset": 7,
        "key": b"k7",
        "headers": [("h", b"1")],
        "timestamp": 1_700_000_000_007,
        "generation": state.generation,
    }
    message.metadata["mine"] = 1  # the dict is the message's own, kept once built
    assert message.metadata["mine"] == 1
    assert message.ack_options == {}
    message.configure_ack(on_failure="stop")
    assert message.ack_options == {"on_failure": "stop"}
    assert "orders" in repr(message)


def test_each_message_has_its_own_options_and_metadata() -> None:
    acks, _, state = _setup()
    first, second = _read(state, acks, [_record(0), _record(1)])
    first.ack_options["on_failure"] = "stop"
    first.metadata["x"] = 1
    assert second.ack_options == {}
    assert "x" not in second.metadata


def test_changed_metadata_does_not_misdirect_the_ack() -> None:
    acks, _, state = _setup()
    messages = _read(state, acks, [_record(o) for o in range(4)])
    for message in messages:
        message.metadata["offset"] = 999
        message.metadata["partition"] = "nonsense"
    acks.ack(messages, [])
    assert state.commit_point() == 4
    assert state.in_flight == 0


def test_a_revoked_partitions_messages_settle_nothing() -> None:
    acks, tracker, state = _setup()
    messages = _read(state, acks, [_record(o) for o in range(3)])
    tracker.revoke([TP])
    tracker.assign([TP])  # assigned again: a new generation, read afresh
    fresh = tracker.get(TP)
    assert fresh is not None
    fresh.add_all([0, 1, 2])
    acks.ack(messages, [])
    assert fresh.in_flight == 3
    assert fresh.commit_point() == 0


def test_a_copy_made_with_replace_is_acknowledged_by_its_metadata() -> None:
    acks, _, state = _setup()
    (message,) = _read(state, acks, [_record(5)])
    copy = dataclasses.replace(message, data=b"other")
    assert copy.metadata["offset"] == 5
    assert copy.data == b"other"
    acks.ack([copy], [])
    assert state.in_flight == 0
    assert state.commit_point() == 6


def test_the_decoder_decodes_values_and_fails_what_it_refuses() -> None:
    acks, _, state = _setup()
    records = [_record(0, b'{"a": 1}'), _record(1, b"not json"), _record(2, None)]
    good, bad, tombstone = kafka_messages(records, state, acks, json.loads)
    assert records == []  # each record let go as its message was made
    assert state.in_flight == 3
    assert good.data == {"a": 1}
    assert not good.is_failed
    assert bad.is_failed
    assert isinstance(bad.reason, DecodeError)
    assert bad.data == b"not json"
    assert tombstone.data is None
    assert not tombstone.is_failed


def test_a_message_made_by_hand_has_empty_metadata() -> None:
    message = KafkaMessage(data=1)
    assert message.metadata == {}
    assert message.ack_options == {}


def test_runs_of_several_partitions_and_copies_settle_each_one() -> None:
    other = TopicPartition("orders", 4)
    acks, tracker, _ = acknowledger(TP, other)
    mine, theirs = tracker.get(TP), tracker.get(other)
    assert mine is not None
    assert theirs is not None
    records = [_record(o) for o in range(6)]
    others = [dataclasses.replace(r, partition=4) for r in records]
    a = _read(mine, acks, records)
    b = _read(theirs, acks, others)
    copy = dataclasses.replace(b[5], data=None)
    acks.ack([a[0], b[0], a[1], b[1], *a[2:], b[2], b[3], b[4], copy], [])
    assert (mine.commit_point(), mine.in_flight) == (6, 0)
    assert (theirs.commit_point(), theirs.in_flight) == (6, 0)
    acks.ack([*a, *b], [])  # settled once only
    assert (mine.in_flight, theirs.in_flight) == (0, 0)


def test_the_record_a_failure_is_dead_lettered_as_is_the_one_read() -> None:
    acks, _, state = _setup()
    records = [_record(0, b'{"a": 1}', headers=[("h", b"1")])]
    (message,) = kafka_messages(records, state, acks, json.loads)
    message.put_data("replaced by the handler")
    record = raw_record(message, (TP, state.generation, 0))
    assert record is not None
    assert (record.topic, record.partition, record.offset) == ("orders", 3, 0)
    assert (record.key, record.value, record.headers) == (b"k0", b'{"a": 1}', [("h", b"1")])
    assert record.timestamp == 1_700_000_000_000
    copy = dataclasses.replace(message, data=b"copied")
    from_copy = raw_record(copy, (TP, state.generation, 0))
    assert from_copy is not None
    assert (from_copy.key, from_copy.value, from_copy.headers) == (b"k0", b"copied", [("h", b"1")])
    assert raw_record(dataclasses.replace(message), (TP, state.generation, 0)) is None
