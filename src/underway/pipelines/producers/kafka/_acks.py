"""Settling the messages of a :class:`KafkaProducer`: mark them done, dead-letter, or stop."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from underway.errors import ConfigError
from underway.pipelines.message import Message
from underway.pipelines.producers.kafka._message import KafkaMessage
from underway.pipelines.producers.kafka._offsets import OffsetTracker, PartitionOffsets

__all__ = [
    "ON_FAILURE",
    "Delivery",
    "KafkaAcknowledger",
    "OnFailure",
    "describe",
    "message_place",
    "raw_record",
]

_log = logging.getLogger("underway.pipelines.kafka")

OnFailure = Literal["ack", "dead_letter", "stop"]
ON_FAILURE: tuple[OnFailure, ...] = ("ack", "dead_letter", "stop")


@dataclass(frozen=True)
class Delivery:
    """A failed message on its way to the dead-letter topic."""

    tp: TopicPartition
    generation: int
    record: ConsumerRecord[Any, Any]
    reason: str


def describe(reason: Any) -> str:
    """A failure reason as text for a header (an exception as ``Type: text``)."""
    if isinstance(reason, BaseException):
        return f"{type(reason).__name__}: {reason}"
    return str(reason)


def message_place(message: Message) -> tuple[TopicPartition, int, int] | None:
    """``(tp, generation, offset)`` of a message, or ``None`` if it cannot be told.

    A :class:`KafkaMessage` knows its partition and offset; another object (a copy a
    handler made and acknowledged itself) is placed by its metadata, ``None`` when that
    was mangled.
    """
    if type(message) is KafkaMessage:
        offsets = message._offsets
        if offsets is not None:
            return offsets.partition, offsets.generation, message._offset
    meta = message.metadata
    topic, partition = meta.get("topic"), meta.get("partition")
    offset, generation = meta.get("offset"), meta.get("generation")
    if not (
        isinstance(topic, str)
        and isinstance(partition, int)
        and isinstance(offset, int)
        and isinstance(generation, int)
    ):
        return None
    return TopicPartition(topic, partition), generation, offset


def raw_record(
    message: Message, place: tuple[TopicPartition, int, int]
) -> ConsumerRecord[Any, Any] | None:
    """The record a failed message is dead-lettered as, or ``None`` when it cannot be told.

    A :class:`KafkaMessage` keeps what it was read as. A copy (``dataclasses.replace``)
    is taken from its metadata, with its data as the value while that is still bytes.
    """
    if type(message) is KafkaMessage and (record := message.raw_record()) is not None:
        return record
    data, meta = message.data, message.metadata
    if not (data is None or isinstance(data, bytes)):
        return None
    tp, _, offset = place
    return ConsumerRecord(
        topic=tp.topic,
        partition=tp.partition,
        offset=offset,
        timestamp=meta.get("timestamp", -1),
        timestamp_type=0,
        key=meta.get("key"),
        value=data,
        checksum=None,
        serialized_key_size=-1,
        serialized_value_size=-1,
        headers=list(meta.get("headers") or ()),
    )


class KafkaAcknowledger:
    """The acknowledger of one producer's messages.

    Args:
        tracker: The offsets of the partitions the producer owns.
        on_failure: The producer's failure policy.
        dead_letter: Whether the producer has a dead-letter topic.
        publish: Starts publishing failed messages to the dead-letter topic; each is
            settled once published.
        stop_partition: Pauses a partition for good (``on_failure="stop"``).
        settled: Called with how many messages were settled (wakes the committer).
        owner: Names the producer in logs.
    """

    def __init__(
        self,
        *,
        tracker: OffsetTracker[TopicPartition],
        on_failure: OnFailure,
        dead_letter: bool,
        publish: Callable[[list[Delivery]], None],
        stop_partition: Callable[[TopicPartition], None],
        settled: Callable[[int], None],
        owner: str,
    ) -> None:
        self.on_failure = on_failure
        self._tracker = tracker
        self._dead_letter = dead_letter
        self._publish = publish
        self._stop_partition = stop_partition
        self._settled = settled
        self._owner = owner
        #: Dead-letter topics missing at the last start: ``"dead_letter"`` is refused.
        self.missing_dead_letter_topics: list[str] = []

    def __repr__(self) -> str:
        return f"<acknowledger of {self._owner}>"

    def check_ack_options(self, options: Mapping[str, Any]) -> None:
        """Raise ``ConfigError`` for ack options this producer cannot honour."""
        unknown = sorted(set(options) - {"on_failure"})
        if unknown:
            raise ConfigError(f"unknown Kafka ack option(s) {unknown}; known: on_failure")
        action = options.get("on_failure", self.on_failure)
        if action not in ON_FAILURE:
            raise ConfigError(f"on_failure={action!r} is not one of {ON_FAILURE}")
        if action == "dead_letter" and not self._dead_letter:
            raise ConfigError("on_failure='dead_letter' but the producer has no dead-letter topic")
        if action == "dead_letter" and self.missing_dead_letter_topics:
            raise ConfigError(
                f"on_failure='dead_letter' but the dead-letter topic(s) "
                f"{self.missing_dead_letter_topics} did not exist when the producer started"
            )

    def ack(self, successful: Sequence[Message], failed: Sequence[Message]) -> None:
        """Mark ``successful`` done; settle ``failed`` per their ``on_failure``.

        Nothing is sent here: the committer commits the offsets that became contiguous,
        and dead letters are published in the background (each is settled once sent).
        """
        count = self._settle_successful(successful) if successful else 0
        dead: list[Delivery] = []
        for message in failed:
            place = message_place(message)
            action = self._failure_action(message)
            if action == "ack":
                count += self.settle(place)
            elif action == "stop":
                self._stop(place, message)
            elif (
                place is not None
                and (state := self._tracker.get(place[0], place[1])) is not None
                and state.unsettled(place[2])
            ):
                record = raw_record(message, place)
                if record is None:
                    self._unpublishable(place, message)
                    continue
                dead.append(Delivery(place[0], place[1], record, describe(message.reason)))
        if dead:
            self._publish(dead)
        if count:
            self._settled(count)

    def _settle_successful(self, messages: Sequence[Message]) -> int:
        """Settle ``messages``, grouped by partition and generation; returns how many.

        The hot path: a pipeline's messages come in runs of one partition, so each run's
        offsets are gathered in one list and settled in one call.
        """
        runs: dict[int, tuple[PartitionOffsets, list[int]]] = {}
        last: PartitionOffsets | None = None
        run: list[int] = []
        count = 0
        for message in messages:
            if type(message) is KafkaMessage:
                offsets = message._offsets
                if offsets is not None:
                    if offsets is not last:
                        entry = runs.get(id(offsets))
                        if entry is None:
                            entry = runs[id(offsets)] = (offsets, [])
                        last, run = offsets, entry[1]
                    run.append(message._offset)
                    continue
            count += self.settle(message_place(message))
        for offsets, settled in runs.values():
            # A partition revoked since (perhaps assigned again) is read again by its owner.
            if self._tracker.get(offsets.partition) is offsets:
                count += offsets.settle_all(settled)
        return count

    def settle(self, place: tuple[TopicPartition, int, int] | None) -> int:
        """Mark one message settled; returns 1, or 0 if its partition is no longer owned."""
        if place is None:
            _log.warning("%s: a message's metadata was changed; not acknowledged", self._owner)
            return 0
        tp, generation, offset = place
        state = self._tracker.get(tp, generation)
        if state is None:
            return 0  # revoked since: the partition's new owner reads it again
        return int(state.settle(offset))

    def _unpublishable(self, place: tuple[TopicPartition, int, int], message: Message) -> None:
        """A failed copy of a message whose data is no longer bytes cannot be dead-lettered."""
        tp, _, offset = place
        _log.error(
            "%s: the message at offset %d of %s[%d] failed as a copy whose data is not the "
            "raw value (acknowledge the message the pipeline gave); it is not dead-lettered, "
            "and nothing past it is committed until it is read again",
            self._owner,
            offset,
            tp.topic,
            tp.partition,
        )

    def _failure_action(self, message: Message) -> OnFailure:
        action = message.ack_options.get("on_failure", self.on_failure)
        if action not in ON_FAILURE or (
            action == "dead_letter" and (not self._dead_letter or self.missing_dead_letter_topics)
        ):
            _log.error(
                "%s: on_failure=%r cannot be honoured; settled per the producer's %r",
                self._owner,
                action,
                self.on_failure,
            )
            action = self.on_failure
        result: OnFailure = action
        return result

    def _stop(self, place: tuple[TopicPartition, int, int] | None, message: Message) -> None:
        if place is None:
            return
        tp, generation, offset = place
        state = self._tracker.get(tp, generation)
        if state is None or not state.stop(offset):
            return
        self._stop_partition(tp)
        _log.error(
            "%s: message at offset %d of %s[%d] failed (%s); consuming that partition is "
            "stopped and nothing past it is committed (on_failure='stop')",
            self._owner,
            offset,
            tp.topic,
            tp.partition,
            describe(message.reason),
        )
