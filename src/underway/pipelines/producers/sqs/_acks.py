"""Settling the messages of an :class:`SQSProducer`: delete, make visible again, or leave."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from underway.pipelines.message import Message
from underway.pipelines.producers._leases import LeaseKeeper
from underway.pipelines.producers.sqs._outage import Outage
from underway.pipelines.producers.sqs._policy import (
    OnFailure,
    RecentIds,
    check_ack_options,
    failure_setting,
    retry_delay,
)
from underway.pipelines.producers.sqs._queue import CALL_ERRORS, EntryFailure, QueueOps

__all__ = ["ACK_ATTEMPTS", "Held", "SQSAcknowledger", "SettlePolicy", "log_entry_failures"]

_log = logging.getLogger("underway.pipelines.sqs")

#: Attempts at one settling call before its messages are left to come again.
ACK_ATTEMPTS = 4
#: Codes of an entry whose receipt handle no longer names a message in flight.
_EXPIRED = frozenset({"ReceiptHandleIsInvalid", "InvalidParameterValue", "MessageNotInflight"})


class Held(NamedTuple):
    """A message being settled: its id and newest receipt handle."""

    message_id: str
    receipt_handle: str


@dataclass(frozen=True)
class SettlePolicy:
    """How a producer's messages are settled (see :class:`SQSProducer`)."""

    queue_url: str
    on_failure: OnFailure
    backoff: tuple[float, float]
    reconnect_interval: float
    max_reconnect_interval: float


def log_entry_failures(queue_url: str, what: str, failures: Sequence[EntryFailure]) -> None:
    """Log the entries SQS refused: an expired receipt handle is a warning, else an error."""
    for failure in failures:
        expired = failure.code in _EXPIRED
        _log.log(
            logging.WARNING if expired else logging.ERROR,
            "SQS queue %s: %s a message failed (%s: %s)%s",
            queue_url,
            what,
            failure.code,
            failure.message,
            "; its receipt handle expired, the message will be delivered again" if expired else "",
        )


class SQSAcknowledger:
    """The acknowledger of one producer's messages.

    Args:
        policy: The producer's settings.
        held: The messages handed to the pipeline and not yet settled, by message id: their
            newest receipt handle (shared with the producer). A message is settled only
            while it is held.
        keeper: Extends the visibility of held messages (by id); one leaves it once settled.
        outage: Logs calls that fail.
        ops: The producer's calls, ``None`` once it is closed.
        deleted: The ids of the messages deleted lately (shared with the producer, which
            does not hand such a message to the pipeline again).
        extension_over: Waits for the visibility extensions under way that name the given
            message ids: a change of visibility is sent after them, or they would undo it.
    """

    def __init__(
        self,
        policy: SettlePolicy,
        held: dict[str, str],
        keeper: LeaseKeeper[str],
        outage: Outage,
        ops: Callable[[], QueueOps | None],
        deleted: RecentIds,
        extension_over: Callable[[Iterable[str]], Awaitable[None]],
    ) -> None:
        self.policy = policy
        self._held = held
        self._keeper = keeper
        self._outage = outage
        self._ops = ops
        self._deleted = deleted
        self._extension_over = extension_over

    def __repr__(self) -> str:
        return f"<acknowledger of SQS queue {self.policy.queue_url}>"

    def check_ack_options(self, options: Mapping[str, Any]) -> None:
        """Raise ``ConfigError`` for ack options SQS cannot honour (see :class:`SQSProducer`)."""
        check_ack_options(options, self.policy.on_failure)

    async def ack(self, successful: Sequence[Message], failed: Sequence[Message]) -> None:
        """Delete ``successful``; settle ``failed`` per their ``on_failure`` and ``delay``."""
        deletes: list[Held] = []
        later: dict[int, list[Held]] = {}
        for message in successful:
            held = self._take(message)
            if held is not None:
                deletes.append(held)
        for message in failed:
            held = self._take(message)
            if held is None:
                continue
            setting = failure_setting(
                message.ack_options,
                self.policy.on_failure,
                self.policy.backoff,
                _receive_count(message),
                _reporter(message),
            )
            if setting.action == "delete":
                deletes.append(held)
            elif setting.visibility is not None:
                later.setdefault(setting.visibility, []).append(held)
            else:  # "leave": it comes again once its visibility timeout runs out
                self._keeper.discard([held.message_id])
        for item in deletes:
            self._deleted.add(item.message_id)
        calls = [self._settle("deleting", deletes, None)] if deletes else []
        calls += [self._settle("changing the visibility of", h, s) for s, h in later.items()]
        if calls:
            await asyncio.gather(*calls)

    def _take(self, message: Message) -> Held | None:
        message_id = message.metadata.get("message_id")
        handle = self._held.pop(message_id, None) if isinstance(message_id, str) else None
        if handle is None or not isinstance(message_id, str):
            _log.warning(
                "SQS queue %s: message %s is not held (already settled, the producer was "
                "closed, or its metadata was changed); not settled again",
                self.policy.queue_url,
                message_id,
            )
            return None
        return Held(message_id, handle)

    async def _settle(self, what: str, items: list[Held], seconds: int | None) -> None:
        """Send one settling call (in chunks), retrying while SQS cannot be reached.

        The messages are no longer held, so no extension names them any more; a change of
        visibility waits for an extension under way that does. A message delivered again
        while its deletion is retried is deleted again by the producer, not handled.
        """
        policy = self.policy
        handles = [item.receipt_handle for item in items]
        try:
            if seconds is not None:
                await self._extension_over(item.message_id for item in items)
            for attempt in range(1, ACK_ATTEMPTS + 1):
                ops = self._ops()
                if ops is None:
                    self._not_settled(what, handles, "the producer is closed")
                    return
                try:
                    if seconds is None:
                        failures = await ops.delete(handles)
                    else:
                        failures = await ops.change_visibility(handles, seconds)
                except CALL_ERRORS as exc:
                    self._outage.failed(f"{what} {len(handles)} message(s)", exc)
                    if attempt < ACK_ATTEMPTS:
                        await asyncio.sleep(
                            retry_delay(
                                attempt, policy.reconnect_interval, policy.max_reconnect_interval
                            )
                        )
                    continue
                self._outage.recovered()
                log_entry_failures(policy.queue_url, what, failures)
                return
            self._not_settled(what, handles, f"SQS failed {ACK_ATTEMPTS} attempts")
        finally:
            self._keeper.discard(item.message_id for item in items)

    def _not_settled(self, what: str, handles: list[str], why: str) -> None:
        _log.error(
            "SQS queue %s: %s %d message(s) gave up (%s); they will be delivered again "
            "once their visibility timeout runs out",
            self.policy.queue_url,
            what,
            len(handles),
            why,
        )


def _reporter(message: Message) -> Callable[[str], None]:
    def report(text: str) -> None:
        _log.error("SQS message %s: %s", message.metadata.get("message_id"), text)

    return report


def _receive_count(message: Message) -> int:
    count = message.metadata.get("receive_count")
    return count if isinstance(count, int) and not isinstance(count, bool) else 1
