"""Settling the messages of a :class:`PubSubProducer`: acknowledge, nack, delay, in bulk."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from google.pubsub_v1 import SubscriberAsyncClient

from underway.pipelines.message import Message
from underway.pipelines.producers._leases import LeaseKeeper
from underway.pipelines.producers.pubsub._client import OUTAGE_ERRORS, REFUSED_ERRORS, Outage
from underway.pipelines.producers.pubsub._policy import ACK_CHUNK, FailurePolicy, chunks

__all__ = ["ACK_ATTEMPTS", "PubSubAcknowledger"]

_log = logging.getLogger("underway.pipelines.pubsub")

#: Attempts to send one request of acknowledgements before leaving it to the ack deadline.
ACK_ATTEMPTS = 4


class PubSubAcknowledger:
    """The acknowledger of one producer's messages; its lease keeper holds their ack ids.

    Successes (and failures settled with ``"ack"``) go in ``acknowledge`` requests of up
    to :data:`~._policy.ACK_CHUNK` ack ids; other failures in ``modify_ack_deadline``
    requests, one per deadline. A request that fails on an outage is tried again
    :data:`ACK_ATTEMPTS` times in all, with backoff; after that (or once the producer is
    closed) the messages are left to their ack deadline, and delivered again.

    Lease extensions go through :meth:`extend`, never for a message already settled: each
    of its requests names only the ack ids still held, and a settlement of an ack id in
    the extension request under way waits for its answer (the service could otherwise
    apply the extension after the settlement, and undo a nack or shorten a delay).

    Args:
        subscription: The subscription's full path.
        policy: The producer's failure settings.
        keeper: Holds the ack id of every message handed out and not yet settled.
        outage: Logs a failing service.
        retry_interval: Seconds before the first retry of a failed request.
        timeout: Seconds each request may take.
    """

    def __init__(
        self,
        subscription: str,
        policy: FailurePolicy,
        keeper: LeaseKeeper[str],
        outage: Outage,
        *,
        retry_interval: float,
        timeout: float,
    ) -> None:
        self.subscription = subscription
        self.policy = policy
        self.keeper = keeper
        self.outage = outage
        self.retry_interval = retry_interval
        self.timeout = timeout
        self.client: SubscriberAsyncClient | None = None
        self.settling = 0
        self.chunk = ACK_CHUNK  # ack ids per request
        self._extension: tuple[frozenset[str], asyncio.Future[None]] | None = None

    def __repr__(self) -> str:
        return f"<acknowledger of Pub/Sub subscription {self.subscription!r}>"

    def check_ack_options(self, options: Mapping[str, Any]) -> None:
        """Raise ``ConfigError`` for ack options this producer cannot honour."""
        self.policy.check(options)

    async def ack(self, successful: Sequence[Message], failed: Sequence[Message]) -> None:
        """Acknowledge ``successful`` in bulk; settle ``failed`` per their ack options."""
        acks: list[str] = []
        deadlines: dict[int, list[str]] = {}
        for message in successful:
            ack_id = self._take(message)
            if ack_id is not None:
                acks.append(ack_id)
        for message in failed:
            ack_id = self._take(message)
            if ack_id is None:
                continue
            seconds = self.policy.deadline(
                message.ack_options, message.metadata.get("delivery_attempt")
            )
            if seconds is None:
                acks.append(ack_id)
            else:
                deadlines.setdefault(seconds, []).append(ack_id)
        count = len(acks) + sum(len(ids) for ids in deadlines.values())
        self.settling += count
        try:
            await self._after_extension([*acks, *(i for ids in deadlines.values() for i in ids)])
            for chunk in chunks(acks, self.chunk):
                await self._send(chunk, None)
            for seconds, ack_ids in deadlines.items():
                for chunk in chunks(ack_ids, self.chunk):
                    await self._send(chunk, seconds)
        finally:
            self.settling -= count

    def _take(self, message: Message) -> str | None:
        ack_id = message.metadata.get("ack_id")
        if isinstance(ack_id, str) and ack_id in self.keeper:
            self.keeper.discard((ack_id,))
            return ack_id
        if self.client is None:
            _log.error(
                "%r: a message settled after the producer closed is not acknowledged; it is "
                "delivered again once its ack deadline passes",
                self,
            )
        else:
            _log.warning(
                "%r: message with ack_id %r is not held (already settled, or its metadata "
                "was changed); not acknowledged again",
                self,
                ack_id,
            )
        return None

    async def _after_extension(self, ack_ids: Collection[str]) -> None:
        """Wait for the extension request under way if it names any of ``ack_ids``."""
        extension = self._extension
        if extension is not None and not extension[0].isdisjoint(ack_ids):
            await asyncio.shield(extension[1])

    async def extend(self, ack_ids: Sequence[str], seconds: int) -> None:
        """Set the ack deadline of those of ``ack_ids`` still held to ``seconds``.

        One request per chunk, each naming the ack ids held when it is sent; a
        settlement of one of them waits for that request's answer. Errors raise.
        """
        loop = asyncio.get_running_loop()
        for chunk in chunks(ack_ids, self.chunk):
            held = [ack_id for ack_id in chunk if ack_id in self.keeper]
            if not held or self.client is None:
                continue
            done: asyncio.Future[None] = loop.create_future()
            self._extension = (frozenset(held), done)
            try:
                await self.modify(held, seconds)
            finally:
                self._extension = None
                if not done.done():
                    done.set_result(None)

    async def modify(self, ack_ids: Sequence[str], seconds: int) -> None:
        """One ``modify_ack_deadline`` per chunk of ``ack_ids``, once each (errors raise)."""
        client = self.client
        if client is None:
            return
        for chunk in chunks(ack_ids, self.chunk):
            await client.modify_ack_deadline(
                subscription=self.subscription,
                ack_ids=list(chunk),
                ack_deadline_seconds=seconds,
                retry=None,
                timeout=self.timeout,
            )

    async def _send(self, ack_ids: Sequence[str], seconds: int | None) -> None:
        """Acknowledge ``ack_ids`` (``seconds`` is ``None``) or set their deadline."""
        what = "acknowledging" if seconds is None else f"setting an ack deadline of {seconds} s"
        for attempt in range(1, ACK_ATTEMPTS + 1):
            client = self.client
            if client is None:
                break
            try:
                if seconds is None:
                    await client.acknowledge(
                        subscription=self.subscription,
                        ack_ids=list(ack_ids),
                        retry=None,
                        timeout=self.timeout,
                    )
                else:
                    await self.modify(ack_ids, seconds)
            except REFUSED_ERRORS as exc:
                _log.error(
                    "%s %d message(s) of %r was refused: %s; they are delivered again once "
                    "their ack deadline passes",
                    what,
                    len(ack_ids),
                    self.subscription,
                    exc,
                )
                return
            except OUTAGE_ERRORS as exc:
                pause = self.retry_interval * 2 ** (attempt - 1)
                self.outage.failed(what, exc, pause)
                if attempt < ACK_ATTEMPTS:
                    await asyncio.sleep(pause)
                continue
            self.outage.recovered()
            return
        if self.client is not None and self.outage.since is not None:
            self.outage.gave_up(len(ack_ids))  # told when the outage ends
            return
        _log.error(
            "%r: %s %d message(s) failed (%s); they are delivered again once their ack "
            "deadline passes",
            self,
            what,
            len(ack_ids),
            "producer closed" if self.client is None else f"{ACK_ATTEMPTS} attempts",
        )
