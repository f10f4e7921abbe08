"""Settling the messages of a :class:`RedisStreamProducer`: acknowledge, retry, dead-letter."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from redis.exceptions import ResponseError

from underway.errors import ConfigError
from underway.pipelines.message import Message
from underway.pipelines.producers.redis_streams._ops import (
    CONNECTION_ERRORS,
    DeadLetter,
    Entry,
    Outage,
    StreamOps,
    describe,
)
from underway.pipelines.producers.redis_streams._tasks import CommandTasks

_log = logging.getLogger("underway.pipelines.redis")

OnFailure = Literal["retry", "dead_letter", "ack"]
ON_FAILURE: tuple[OnFailure, ...] = ("retry", "dead_letter", "ack")
ACK_ATTEMPTS = 5


@dataclass(frozen=True)
class SettlePolicy:
    """How a producer's messages are settled (see :class:`RedisStreamProducer`)."""

    stream: str
    on_failure: OnFailure
    max_deliveries: int | None
    dead_letter_stream: str | None
    claim_idle: float
    reconnect_interval: float


class StreamAcknowledger:
    """The acknowledger of one producer's messages, and the table of the entries it holds.

    Args:
        policy: The producer's settings.
        connect: Returns the producer's commands (connecting on first use).
        outage: Logs lost connections.
        owner: Names the producer in logs.
        tasks: Where the acknowledgements run: a task of their own each, so that a
            cancelled caller ends at once and the acknowledgement is still sent (see
            ``_redis_tasks``).
    """

    def __init__(
        self,
        policy: SettlePolicy,
        connect: Callable[[], StreamOps],
        outage: Outage,
        owner: str,
        tasks: CommandTasks,
    ) -> None:
        self.policy = policy
        self.held: dict[str, Entry] = {}
        self.closed = False
        self._connect = connect
        self._outage = outage
        self._owner = owner
        self._tasks = tasks

    def __repr__(self) -> str:
        return f"<acknowledger of {self._owner}>"

    def check_ack_options(self, options: Mapping[str, Any]) -> None:
        """Raise ``ConfigError`` for ack options this producer cannot honour."""
        unknown = sorted(set(options) - {"on_failure"})
        if unknown:
            raise ConfigError(f"unknown Redis Streams ack option(s) {unknown}; known: on_failure")
        action = options.get("on_failure", self.policy.on_failure)
        if action not in ON_FAILURE:
            raise ConfigError(f"on_failure={action!r} is not one of {ON_FAILURE}")
        if action == "dead_letter" and self.policy.dead_letter_stream is None:
            raise ConfigError("on_failure='dead_letter' but the producer has no dead-letter stream")

    async def ack(self, successful: Sequence[Message], failed: Sequence[Message]) -> None:
        """Acknowledge ``successful`` in one call; settle ``failed`` per their ``on_failure``."""
        ack_ids: list[str] = []
        dead: list[DeadLetter] = []
        settling: list[Entry] = []
        for message in successful:
            entry = self._take(message)
            if entry is not None:
                settling.append(entry)
                ack_ids.append(entry.id)
        for message in failed:
            entry = self._take(message)
            if entry is None:
                continue
            action, reason = self._failure_action(message, entry)
            if action == "retry":
                del self.held[entry.id]
                continue
            settling.append(entry)
            if action == "ack":
                ack_ids.append(entry.id)
            else:
                dead.append(DeadLetter(entry, reason, entry.deliveries))
        if not settling:
            return
        try:
            more_ids, dead = self.bury(dead)
        except BaseException:
            self._release(settling)
            raise
        settle = self._settle_held(ack_ids + more_ids, dead, settling, self.closed)
        await self._tasks.run(settle, "ack")

    async def _settle_held(
        self, ack_ids: list[str], dead: list[DeadLetter], settling: list[Entry], late: bool
    ) -> None:
        try:
            if late:
                self._not_acked(len(ack_ids) + len(dead), "closed")
            else:
                await self.settle(ack_ids, dead)
        finally:
            self._release(settling)

    def _release(self, settling: list[Entry]) -> None:
        for entry in settling:
            self.held.pop(entry.id, None)

    def _take(self, message: Message) -> Entry | None:
        entry_id = message.metadata.get("id")
        entry = self.held.get(entry_id) if isinstance(entry_id, str) else None
        if entry is None or entry.settling:
            _log.warning(
                "%s: message with id %r is not held (already settled, or its metadata was "
                "changed); not acknowledged again",
                self._owner,
                entry_id,
            )
            return None
        entry.settling = True
        return entry

    def _failure_action(self, message: Message, entry: Entry) -> tuple[OnFailure, str]:
        policy = self.policy
        unknown = sorted(set(message.ack_options) - {"on_failure"})
        if unknown:
            _log.error("message %s: unknown ack option(s) %s ignored", entry.id, unknown)
        action = message.ack_options.get("on_failure", policy.on_failure)
        problem = ""
        if action not in ON_FAILURE:
            problem = f"on_failure={action!r} is not one of {ON_FAILURE}"
        elif action == "dead_letter" and policy.dead_letter_stream is None:
            problem = "on_failure='dead_letter' but the producer has no dead-letter stream"
        if problem:
            _log.error(
                "message %s: %s; settled per the producer's on_failure=%r",
                entry.id,
                problem,
                policy.on_failure,
            )
            action = policy.on_failure
        reason = describe(message.reason)
        limit = policy.max_deliveries
        if action == "retry" and limit is not None and entry.deliveries >= limit:
            return "dead_letter", f"failed on delivery {entry.deliveries} of {limit}: {reason}"
        return action, reason

    def bury(self, dead: list[DeadLetter]) -> tuple[list[str], list[DeadLetter]]:
        """Log entries to dead-letter; returns ``(ids to acknowledge, entries to move)``.

        Without a dead-letter stream the entries are acknowledged (dropped) instead.
        """
        target = self.policy.dead_letter_stream
        for item in dead:
            _log.warning(
                "message %s of stream %r %s: %s",
                item.entry.id,
                self.policy.stream,
                "dropped (no dead-letter stream)" if target is None else f"moved to {target!r}",
                item.reason,
            )
        if target is None:
            return [item.entry.id for item in dead], []
        return [], dead

    async def settle(self, ack_ids: list[str], dead: list[DeadLetter]) -> None:
        """Send the acknowledgements, retrying while Redis cannot be reached.

        A first attempt that fails on a lost connection is followed at once by a second
        one (on a new connection); later ones wait ``reconnect_interval``. After
        :data:`ACK_ATTEMPTS` failed attempts (or once closed: the first attempt is always
        made) the entries stay pending, and are delivered again after ``claim_idle``.
        """
        count = len(ack_ids) + len(dead)
        for attempt in range(1, ACK_ATTEMPTS + 1):
            if attempt > 1 and self.closed:
                break
            try:
                await self._connect().settle(ack_ids, dead)
            except CONNECTION_ERRORS as exc:
                if attempt == 1 and self._outage.since is None:
                    continue  # a dropped connection: again at once, on a new one
                self._outage.failed("acknowledging", exc)
                if attempt < ACK_ATTEMPTS:
                    await asyncio.sleep(self.policy.reconnect_interval)
                continue
            except ResponseError as exc:
                _log.error(
                    "acknowledging %d message(s) of stream %r failed: %s",
                    count,
                    self.policy.stream,
                    exc,
                )
                return
            self._outage.recovered()
            return
        self._not_acked(
            count, "closed" if self.closed else f"Redis unreachable after {ACK_ATTEMPTS} attempts"
        )

    def _not_acked(self, count: int, why: str) -> None:
        _log.error(
            "%s: %d message(s) not acknowledged (%s); they stay pending and are delivered "
            "again after claim_idle (%.3g s)",
            self._owner,
            count,
            why,
            self.policy.claim_idle,
        )
