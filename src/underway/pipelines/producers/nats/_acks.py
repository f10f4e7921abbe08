"""Settling the messages of a :class:`NATSProducer`: ack, nak with a delay, term, dead-letter.

JetStream acknowledges one message at a time: each ``+ACK``, ``-NAK`` or ``+TERM`` goes to
the message's reply subject. A consumer applies the acknowledgements of one connection in
the order they come, and answers one sent as a request once it has applied it: so a group is
sent as plain publications followed by one request, and the server's answer to that request
says the whole group was applied. A group costs one round trip and one reply, and once the
call returns the broker no longer counts those messages as pending (a flush would only say
that the server received them, not that the consumer applied them, so a new pull could still
find them counted). A dead-lettered message is first published to the dead-letter subject
(a JetStream publication, confirmed by its stream), then terminated; if that publication
fails, the message is nak'd instead and comes again.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NATSError
from nats.js.client import JetStreamContext

from underway.pipelines.message import Message
from underway.pipelines.producers._leases import LeaseKeeper
from underway.pipelines.producers.nats._connection import Outage
from underway.pipelines.producers.nats._policy import (
    Decision,
    FailurePolicy,
    check_ack_options,
    failure_action,
)

__all__ = ["ORIGIN_HEADERS", "NATSAcknowledger", "describe", "nak_payload"]

_log = logging.getLogger("underway.pipelines.nats")

#: Headers added to a dead-lettered message (besides its own headers).
ORIGIN_HEADERS = (
    "Underway-Origin-Stream",
    "Underway-Origin-Subject",
    "Underway-Origin-Sequence",
    "Underway-Origin-Consumer",
    "Underway-Deliveries",
    "Underway-Reason",
)
_MAX_REASON = 1000
_FLUSH_TIMEOUT = 5.0
ACK, TERM, PROGRESS = b"+ACK", b"+TERM", b"+WPI"


def nak_payload(delay: float | None) -> bytes:
    """A ``-NAK``, asking for a redelivery after ``delay`` seconds (at once: ``None``/0)."""
    if not delay:
        return b"-NAK"
    return b"-NAK " + json.dumps({"delay": int(delay * 1_000_000_000)}).encode()


def describe(reason: Any) -> str:
    """A failure's reason as one line of text (for a header or a log line)."""
    text = (
        f"{type(reason).__name__}: {reason}" if isinstance(reason, BaseException) else str(reason)
    )
    return " ".join(text.split())[:_MAX_REASON]


class NATSAcknowledger:
    """The acknowledger of one producer's messages, and the table of the messages it holds.

    Args:
        policy: How failed messages are settled.
        owner: Names the producer in logs.
        lease_interval: Seconds between ``+WPI`` (in progress) signals for held messages.
        timeout: Seconds to wait for the server to confirm acknowledgements.
    """

    def __init__(
        self, policy: FailurePolicy, owner: str, *, lease_interval: float, timeout: float
    ) -> None:
        self.policy = policy
        self.timeout = timeout
        self.owner = owner
        self.held: dict[Message, Msg] = {}
        self.client: Client | None = None
        self.outage: Outage | None = None
        self.js: JetStreamContext | None = None
        self.leases: LeaseKeeper[str] = LeaseKeeper(
            self._in_progress, interval=lease_interval, name=owner
        )

    def __repr__(self) -> str:
        return f"<acknowledger of {self.owner}>"

    def check_ack_options(self, options: Mapping[str, Any]) -> None:
        """Raise :class:`~underway.errors.ConfigError` for options this producer cannot honour."""
        check_ack_options(options, self.policy)

    def hold(self, message: Message, msg: Msg) -> None:
        """Track a message handed to the pipeline; its lease is kept alive until settled."""
        self.held[message] = msg
        self.leases.add((msg.reply,))

    def release_all(self) -> list[Msg]:
        """Forget every held message; returns them (they were never settled)."""
        msgs = list(self.held.values())
        self.held.clear()
        self.leases.clear()
        return msgs

    async def ack(self, successful: Sequence[Message], failed: Sequence[Message]) -> None:
        """Acknowledge ``successful``; settle ``failed`` per their ``on_failure``.

        The acknowledgements are sent at once, the last one as a request the server answers
        once it has applied the group: one round trip, and once this returns the broker no
        longer counts those messages as pending.
        """
        replies: list[tuple[Msg, bytes]] = []
        for message in successful:
            msg = self._take(message)
            if msg is not None:
                replies.append((msg, ACK))
        dead: list[tuple[Message, Msg, Decision]] = []
        for message in failed:
            msg = self._take(message)
            if msg is None:
                continue
            decision = failure_action(message.ack_options, _deliveries(msg), self.policy)
            if decision.why.startswith("ack options ignored"):
                _log.error("%s: message %s: %s", self.owner, _seq(msg), decision.why)
            if decision.action == "dead_letter":
                dead.append((message, msg, decision))
            else:
                replies.append((msg, self._settlement(msg, decision, message.reason)))
        if dead:
            replies += await self._dead_letter(dead)
        await self._send(replies)

    def _take(self, message: Message) -> Msg | None:
        msg = self.held.pop(message, None)
        if msg is None:
            _log.warning(
                "%s: a message (metadata %r) is not held (already settled, or its producer "
                "closed); not acknowledged again",
                self.owner,
                {k: message.metadata.get(k) for k in ("stream", "stream_seq")},
            )
            return None
        self.leases.discard((msg.reply,))
        return msg

    def _settlement(self, msg: Msg, decision: Decision, reason: Any) -> bytes:
        if decision.action == "nak":
            return nak_payload(decision.delay)
        if decision.action == "term":
            level = logging.WARNING if decision.why else logging.DEBUG
            _log.log(
                level,
                "%s: message %s terminated%s: %s",
                self.owner,
                _seq(msg),
                f" ({decision.why})" if decision.why else "",
                describe(reason),
            )
            return TERM
        return ACK

    async def _send(self, replies: list[tuple[Msg, bytes]]) -> None:
        """Send every acknowledgement at once and wait for the server to confirm them.

        A consumer applies the acknowledgements of one connection in the order they come:
        all but the last are plain publications, the last is a request, and the server's
        answer to it says that the whole group was applied (one round trip, one reply).
        """
        if not replies:
            return
        client = self.client
        if client is None or client.is_closed:
            _log.error(
                "%s: %d message(s) not acknowledged (the producer is closed); they come again "
                "after ack_wait",
                self.owner,
                len(replies),
            )
            return
        outage = self.outage
        epoch = None if outage is None else outage.epoch
        error: BaseException | None = None
        unsent = 0
        for msg, payload in replies[:-1]:
            try:
                await client.publish(msg.reply, payload)
            except NATSError as exc:
                error, unsent = exc, unsent + 1
        last, payload = replies[-1]
        try:
            await client.request(last.reply, payload, timeout=self.timeout)
        except (NATSError, TimeoutError) as exc:
            error = exc
        else:
            if not unsent:
                return
        # Sent, or buffered while reconnecting and sent on reconnection: applied then,
        # unless ack_wait ran out first and the message came again (at least once).
        # Failures caused by an outage already logged are not logged again.
        quiet = outage is not None and (outage.since is not None or outage.epoch != epoch)
        _log.log(
            logging.DEBUG if quiet else logging.WARNING,
            "%s: %d acknowledgement(s) not confirmed by the server (%s); those messages may "
            "come again",
            self.owner,
            len(replies),
            f"{type(error).__name__}: {error}",
        )

    async def _dead_letter(
        self, dead: list[tuple[Message, Msg, Decision]]
    ) -> list[tuple[Msg, bytes]]:
        results = await asyncio.gather(
            *(self._publish_dead(message, msg, decision) for message, msg, decision in dead),
            return_exceptions=True,
        )
        replies: list[tuple[Msg, bytes]] = []
        for (message, msg, decision), result in zip(dead, results, strict=True):
            if isinstance(result, BaseException):
                delay = self.policy.backoff[0]
                _log.error(
                    "%s: message %s could not be dead-lettered to %r (%s: %s); nak'd, it comes "
                    "again in %gs",
                    self.owner,
                    _seq(msg),
                    self.policy.dead_letter_subject,
                    type(result).__name__,
                    result,
                    delay,
                )
                replies.append((msg, nak_payload(delay)))
                continue
            _log.log(
                logging.WARNING if decision.why else logging.INFO,
                "%s: message %s moved to %r%s: %s",
                self.owner,
                _seq(msg),
                self.policy.dead_letter_subject,
                f" ({decision.why})" if decision.why else "",
                describe(message.reason),
            )
            replies.append((msg, TERM))
        return replies

    async def _publish_dead(self, message: Message, msg: Msg, decision: Decision) -> None:
        js, subject = self.js, self.policy.dead_letter_subject
        if js is None or subject is None:
            raise ConnectionError("the producer is not connected")
        meta = msg.metadata
        reason = describe(message.reason)
        if decision.why:
            reason = f"{decision.why}: {reason}"[:_MAX_REASON]
        headers = dict(msg.headers or {})
        values = (
            meta.stream,
            msg.subject,
            str(meta.sequence.stream),
            meta.consumer,
            str(meta.num_delivered),
            reason,
        )
        headers.update(zip(ORIGIN_HEADERS, values, strict=True))
        # The same origin message is stored once, however often its dead-lettering is retried
        # (within the dead-letter stream's duplicate window).
        headers["Nats-Msg-Id"] = f"underway-dead.{meta.stream}.{meta.sequence.stream}"
        await js.publish(subject, msg.data, headers=headers)

    async def _in_progress(self, replies: list[str]) -> None:
        client = self.client
        if client is None or client.is_closed:
            return
        if self.outage is not None and self.outage.since is not None:
            return  # unreachable: the outage is logged already; the next tick tries again
        for reply in replies:
            if reply in self.leases:  # not settled while an earlier signal was sent
                await client.publish(reply, PROGRESS)
        await client.flush(timeout=_FLUSH_TIMEOUT)  # type: ignore[arg-type]


def _deliveries(msg: Msg) -> int:
    return int(msg.metadata.num_delivered)


def _seq(msg: Msg) -> str:
    meta = msg.metadata
    return f"{meta.stream}#{meta.sequence.stream}"
