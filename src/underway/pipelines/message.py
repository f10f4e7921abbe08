"""Messages flowing through a pipeline, their acknowledgers, and what batch handlers see."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from underway.errors import DecodeError

__all__ = [
    "Acknowledger",
    "BatchInfo",
    "Message",
    "MessageStatus",
    "NoopAcknowledger",
    "claim_acks",
    "decode_into",
    "decode_message",
]

MessageStatus = Literal["ok", "failed"]
BatchTrigger = Literal["size", "timeout", "flush"]


class Acknowledger(Protocol):
    """Settles messages with the broker they came from.

    ``ack`` receives every message of one group at once (successful and failed), so a
    broker that supports bulk acknowledgements can send them in one call. It may be a
    plain or an ``async`` method. An acknowledger may also have
    ``check_ack_options(options)``, which raises :class:`~underway.errors.ConfigError` for
    options it cannot honour; :meth:`Message.configure_ack` calls it.
    """

    def ack(
        self, successful: Sequence[Message], failed: Sequence[Message]
    ) -> Awaitable[None] | None:
        """Acknowledge ``successful`` and settle ``failed`` per their ``ack_options``."""


class NoopAcknowledger:
    """An acknowledger that does nothing (for messages with no broker behind them)."""

    def ack(self, successful: Sequence[Message], failed: Sequence[Message]) -> None:
        """Ignore the messages."""


@dataclass(eq=False)
class Message:
    """One message: its data, where it goes and how it is acknowledged.

    Attributes:
        data: The payload, as the producer decoded it (handlers may replace it).
        metadata: Broker details (delivery tag, stream id, headers...).
        acknowledger: Settles the message with its broker, exactly once.
        batcher: Name of the batcher the message goes to after processing (``None``: none).
        batch_key: Messages with different keys are never batched together.
        status: ``"ok"`` or ``"failed"``.
        reason: Why the message failed (an exception or any value), else ``None``.
        ack_options: Per-message instructions for the acknowledger (``configure_ack``).
        acked: Whether the message was already acknowledged (by ``ack_immediately``, or by
            the pipeline once it settled it); it is then never acknowledged again.
        ordering_key: Set by a producer whose broker keeps an order (a Kafka topic and
            partition, an SQS FIFO message group, a Pub/Sub ordering key). When the
            processors have no ``partition_by``, messages with equal ordering keys are
            handled one at a time, in the order they were produced; ``None``: no order.
    """

    data: Any
    metadata: dict[str, Any] = field(default_factory=dict)
    acknowledger: Acknowledger = field(default_factory=NoopAcknowledger)
    batcher: str | None = None
    batch_key: Any = None
    status: MessageStatus = "ok"
    reason: Any = None
    ack_options: dict[str, Any] = field(default_factory=dict)
    acked: bool = False
    ordering_key: Hashable | None = None

    def update_data(self, fn: Callable[[Any], Any]) -> Message:
        """Replace the payload by ``fn(payload)``; returns the message for chaining."""
        self.data = fn(self.data)
        return self

    def put_data(self, data: Any) -> Message:
        """Replace the payload by ``data``; returns the message for chaining."""
        self.data = data
        return self

    def put_batcher(self, name: str) -> Message:
        """Route the message to the batcher called ``name`` after processing."""
        self.batcher = name
        return self

    def put_batch_key(self, key: Any) -> Message:
        """Batch the message only with messages that have the same ``key``."""
        self.batch_key = key
        return self

    def failed(self, reason: Any) -> Message:
        """Mark the message failed with ``reason``; it is settled as a failure."""
        self.status = "failed"
        self.reason = reason
        return self

    def configure_ack(self, **options: Any) -> Message:
        """Set per-message acknowledgement options, such as ``on_failure="requeue"``.

        The options are read by the message's acknowledger (for example ``on_success`` and
        ``on_failure`` with values like ``"ack"``, ``"requeue"`` or ``"reject"``).

        Raises:
            ConfigError: The acknowledger cannot honour the options (nothing is changed);
                raised in a handler, it fails the message with that reason.
        """
        merged = {**self.ack_options, **options}
        check = getattr(self.acknowledger, "check_ack_options", None)
        if check is not None:
            check(merged)
        self.ack_options = merged
        return self

    async def ack_immediately(self) -> Message:
        """Acknowledge the message now, per its current status, instead of at the end.

        The message still flows on (to its batcher, for instance), but is not acknowledged
        again: a later failure reaches ``handle_failed`` only. Returns the message.
        """
        if not self.acked:
            self.acked = True
            if self.is_failed:
                await call_ack(self.acknowledger, (), (self,))
            else:
                await call_ack(self.acknowledger, (self,), ())
        return self

    @property
    def is_failed(self) -> bool:
        """Whether the message failed."""
        return self.status == "failed"


@dataclass(frozen=True)
class BatchInfo:
    """What a batch handler is told about its batch.

    Attributes:
        batcher: The batcher's name.
        batch_key: The ``batch_key`` every message of the batch shares.
        size: Messages in the batch.
        trigger: Why it was cut: ``"size"``, ``"timeout"`` or ``"flush"`` (draining, or a
            message pushed in flush mode).
        partition: Index of the batch processor it went to (``0`` without ``partition_by``).
    """

    batcher: str
    batch_key: Any
    size: int
    trigger: BatchTrigger
    partition: int = 0


def claim_acks(
    messages: Sequence[Message],
) -> dict[int, tuple[Acknowledger, list[Message], list[Message]]]:
    """Group messages not yet acked by acknowledger, ``{id: (acknowledger, ok, failed)}``.

    Each message grouped is marked acked as it is, before any acknowledger is called, so
    a late ``ack_immediately()`` never acknowledges it again.
    """
    groups: dict[int, tuple[Acknowledger, list[Message], list[Message]]] = {}
    last: Acknowledger | None = None  # messages come in runs of one acknowledger
    ok: list[Message] = []
    bad: list[Message] = []
    for message in messages:
        if message.acked:
            continue
        message.acked = True
        acknowledger = message.acknowledger
        if acknowledger is not last:
            group = groups.get(id(acknowledger))
            if group is None:
                group = groups[id(acknowledger)] = (acknowledger, [], [])
            last, ok, bad = acknowledger, group[1], group[2]
        if message.status == "failed":
            bad.append(message)
        else:
            ok.append(message)
    return groups


async def call_ack(
    acknowledger: Acknowledger, successful: Sequence[Message], failed: Sequence[Message]
) -> None:
    """Call ``acknowledger.ack`` and await it when it is asynchronous."""
    result = acknowledger.ack(successful, failed)
    if inspect.isawaitable(result):
        await result


def decode_message(
    body: Any,
    decoder: Callable[[Any], Any] | None,
    acknowledger: Acknowledger,
    metadata: dict[str, Any],
) -> Message:
    """Build a message from a broker payload, failing it when ``decoder`` raises.

    A payload that cannot be decoded does not stop the pipeline: its message carries the
    raw ``body`` as data and fails with a :class:`~underway.errors.DecodeError` naming the
    cause, so it is settled per its failure policy like any other failure.
    """
    message = Message(data=body, metadata=metadata, acknowledger=acknowledger)
    return message if decoder is None else decode_into(message, decoder)


def decode_into(message: Message, decoder: Callable[[Any], Any]) -> Message:
    """Replace ``message.data`` (a raw payload) by ``decoder(data)``; returns the message.

    When ``decoder`` raises, the message keeps the raw payload and fails with a
    :class:`~underway.errors.DecodeError` naming the cause.
    """
    try:
        message.data = decoder(message.data)
    except Exception as exc:
        reason = DecodeError(f"payload could not be decoded: {type(exc).__name__}: {exc}")
        reason.__cause__ = exc
        message.failed(reason)
    return message
