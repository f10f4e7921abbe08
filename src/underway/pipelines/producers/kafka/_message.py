"""The message a :class:`KafkaProducer` hands to the pipeline, built cheaply per record.

A Kafka consumer reads hundreds of thousands of records a second, so a message is made
with the fewest steps: it takes the few fields of its record it needs (one allocation
and a store each), and ``metadata`` and ``ack_options`` are built the first time they are
read. The record itself is let go as its message is made: a fetch's records and its
messages are never alive together, so holding a pipeline's worth of messages does not
double what Python's cyclic garbage collector has to walk. The acknowledger finds the
partition and offset through the message's own fields, so a handler that changes
``metadata`` cannot misdirect an acknowledgement.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from underway.pipelines.message import Acknowledger, Message, decode_into
from underway.pipelines.producers.kafka._offsets import PartitionOffsets

__all__ = ["KafkaMessage", "kafka_messages"]


class KafkaMessage(Message):
    """A :class:`Message` read from a Kafka partition.

    It is a ``Message`` in every way (``dataclasses.replace`` makes a plain copy, without
    the record's fields). ``metadata`` holds ``topic``, ``partition``, ``offset``, ``key``,
    ``headers`` (a list of ``(str, bytes)``), ``timestamp`` (ms) and ``generation``.
    """

    _offsets: PartitionOffsets | None = None
    _offset: int = -1
    _key: Any = None
    _value: Any = None  # the raw value, as read (a dead letter carries it)
    _headers: Sequence[tuple[str, bytes]] = ()
    _timestamp: int = -1
    _metadata: dict[str, Any] | None = None
    _ack_options: dict[str, Any] | None = None

    @property
    def metadata(self) -> dict[str, Any]:
        """The record's details, built when first read."""
        metadata = self._metadata
        if metadata is None:
            offsets = self._offsets
            if offsets is None:  # made by hand, without a record
                metadata = self._metadata = {}
                return metadata
            tp: TopicPartition = offsets.partition
            metadata = self._metadata = {
                "topic": tp.topic,
                "partition": tp.partition,
                "offset": self._offset,
                "key": self._key,
                "headers": list(self._headers) if self._headers else [],
                "timestamp": self._timestamp,
                "generation": offsets.generation,
            }
        return metadata

    @metadata.setter
    def metadata(self, value: dict[str, Any]) -> None:
        self._metadata = value

    @property
    def ack_options(self) -> dict[str, Any]:
        """Per-message acknowledgement options (an empty dict until set)."""
        options = self._ack_options
        if options is None:
            options = self._ack_options = {}
        return options

    @ack_options.setter
    def ack_options(self, value: dict[str, Any]) -> None:
        self._ack_options = value

    def raw_record(self) -> ConsumerRecord[Any, Any] | None:
        """The record as it was read (for a dead letter), or ``None`` without one."""
        offsets = self._offsets
        if offsets is None:
            return None
        tp: TopicPartition = offsets.partition
        return ConsumerRecord(
            topic=tp.topic,
            partition=tp.partition,
            offset=self._offset,
            timestamp=self._timestamp,
            timestamp_type=0,
            key=self._key,
            value=self._value,
            checksum=None,
            serialized_key_size=-1,
            serialized_value_size=-1,
            headers=self._headers,
        )


def kafka_messages(
    records: list[ConsumerRecord[Any, Any]],
    offsets: PartitionOffsets,
    acknowledger: Acknowledger,
    decoder: Callable[[Any], Any] | None,
) -> list[Message]:
    """Hand one partition's ``records`` out: add their offsets, return their messages.

    ``records`` is emptied: each record is let go as its message is made. Each message's
    ``ordering_key`` is the partition. The hot path of a Kafka pipeline: a message is one
    allocation and a store per field; the fields not set read the class's defaults.
    Their data is decoded by ``decoder``; a tombstone's data is ``None``, never decoded;
    a value ``decoder`` refuses fails its message (see
    :func:`~underway.pipelines.message.decode_into`).
    """
    offsets.add_all([record.offset for record in records])
    tp = offsets.partition
    new = object.__new__
    messages: list[Message] = []
    append = messages.append
    records.reverse()
    pop = records.pop
    while records:
        record = pop()
        message = new(KafkaMessage)
        message.data = message._value = record.value
        message.acknowledger = acknowledger
        message.ordering_key = tp
        message._offsets = offsets
        message._offset = record.offset
        message._key = record.key
        message._headers = record.headers
        message._timestamp = record.timestamp
        append(message)
    if decoder is not None:
        for made in messages:
            if made.data is not None:
                decode_into(made, decoder)
    return messages
