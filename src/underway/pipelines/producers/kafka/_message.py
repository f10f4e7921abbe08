"""The message a :class:`KafkaProducer` hands to the pipeline, built cheaply per record.

A Kafka consumer reads hundreds of thousands of records a second, so a message is made
with the fewest steps: the record and its partition's offsets are kept as they are, and
``metadata`` and ``ack_options`` are built the first time they are read. The acknowledger
finds the partition and offset through them, so a handler that changes ``metadata``
cannot misdirect an acknowledgement.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiokafka.structs import ConsumerRecord

from underway.pipelines.message import Acknowledger, Message, decode_into
from underway.pipelines.producers.kafka._offsets import PartitionOffsets

__all__ = ["KafkaMessage", "kafka_messages"]


class KafkaMessage(Message):
    """A :class:`Message` read from a Kafka partition.

    It is a ``Message`` in every way (``dataclasses.replace`` makes a plain copy, without
    the record). ``metadata`` holds ``topic``, ``partition``, ``offset``, ``key``,
    ``headers`` (a list of ``(str, bytes)``), ``timestamp`` (ms) and ``generation``.
    """

    _record: ConsumerRecord[Any, Any] | None = None
    _offsets: PartitionOffsets | None = None
    _metadata: dict[str, Any] | None = None
    _ack_options: dict[str, Any] | None = None

    @property
    def metadata(self) -> dict[str, Any]:
        """The record's details, built from it when first read."""
        metadata = self._metadata
        if metadata is None:
            record, offsets = self._record, self._offsets
            if record is None or offsets is None:  # made by hand, without a record
                metadata = self._metadata = {}
                return metadata
            headers = record.headers
            metadata = self._metadata = {
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "key": record.key,
                "headers": list(headers) if headers else [],
                "timestamp": record.timestamp,
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


def kafka_messages(
    records: list[ConsumerRecord[Any, Any]],
    offsets: PartitionOffsets,
    acknowledger: Acknowledger,
    ordering_key: tuple[str, int],
    decoder: Callable[[Any], Any] | None,
) -> list[Message]:
    """Hand one partition's ``records`` out: add their offsets, return their messages.

    The hot path of a Kafka pipeline: each message is made with one allocation and five
    attribute stores; the fields not set read the class's defaults. Their data is
    decoded by ``decoder``; a tombstone's data is ``None``, never decoded; a value
    ``decoder`` refuses fails its message (see
    :func:`~underway.pipelines.message.decode_into`).
    """
    new = object.__new__
    messages: list[Message] = []
    append = messages.append
    for record in records:
        message = new(KafkaMessage)
        message.data = record.value
        message.acknowledger = acknowledger
        message.ordering_key = ordering_key
        message._record = record
        message._offsets = offsets
        append(message)
    offsets.add_all([record.offset for record in records])
    if decoder is not None:
        for made in messages:
            if made.data is not None:
                decode_into(made, decoder)
    return messages
