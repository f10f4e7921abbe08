"""The pulls of a :class:`PubSubProducer`, and the release (nack) of what nobody took.

Each pull runs in a task of its own, awaited through :func:`asyncio.shield`: a fetch
cancelled mid-pull ends at once, and the messages its pull still returns are released
(ack deadline 0), so they come again now rather than once their ack deadline passes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from google.pubsub_v1 import ReceivedMessage, SubscriberAsyncClient

from underway.pipelines.message import Message, decode_message
from underway.pipelines.producers.pubsub._acks import PubSubAcknowledger

__all__ = ["Pulls", "to_message"]

_log = logging.getLogger("underway.pipelines.pubsub")


class Pulls:
    """The pull and release tasks of one producer.

    Args:
        acks: The producer's acknowledger (its client sends the releases).
        pull_timeout: Seconds one pull may wait for messages.
    """

    def __init__(self, acks: PubSubAcknowledger, pull_timeout: float) -> None:
        self.acks = acks
        self.subscription = acks.subscription
        self.pull_timeout = pull_timeout
        self._pulls: set[asyncio.Task[Any]] = set()
        self._releases: set[asyncio.Task[None]] = set()

    async def pull(self, client: SubscriberAsyncClient, count: int) -> list[ReceivedMessage]:
        """Pull up to ``count`` messages; a cancelled caller's messages are released."""
        task = asyncio.get_running_loop().create_task(
            client.pull(
                subscription=self.subscription,
                max_messages=count,
                retry=None,
                timeout=self.pull_timeout,
            ),
            name=f"underway-pubsub-pull-{self.subscription}",
        )
        self._pulls.add(task)
        task.add_done_callback(self._pulls.discard)
        try:
            response = await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(self._orphaned)
            raise
        return list(response.received_messages)

    def _orphaned(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        if task.exception() is not None:
            _log.debug("an abandoned pull of %r failed: %r", self.subscription, task.exception())
            return
        self.release([r.ack_id for r in task.result().received_messages])

    def release(self, ack_ids: Sequence[str]) -> None:
        """Nack ``ack_ids`` in the background, so they are delivered again now."""
        if not ack_ids or self.acks.client is None:
            return
        task = asyncio.get_running_loop().create_task(
            self._nack(ack_ids), name=f"underway-pubsub-release-{self.subscription}"
        )
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def _nack(self, ack_ids: Sequence[str]) -> None:
        try:
            await self.acks.modify(ack_ids, 0)
        except Exception as exc:
            _log.warning(
                "could not release %d unhandled message(s) of %r (%s); they are delivered "
                "again after their ack deadline",
                len(ack_ids),
                self.subscription,
                exc,
            )

    async def end_pulls(self, bound: float) -> None:
        """Give pulls under way ``bound`` seconds to end, then cancel them.

        A pull cancelled after the service chose its messages leaves them to their ack
        deadline.
        """
        await _end(self._pulls, bound)

    async def end_releases(self, bound: float) -> None:
        """Give releases under way ``bound`` seconds to be sent, then cancel them."""
        await _end(self._releases, bound)


async def _end(tasks: set[asyncio.Task[Any]], bound: float) -> None:
    if tasks:
        await asyncio.wait(set(tasks), timeout=bound)
        for task in set(tasks):
            task.cancel()
        await asyncio.wait(set(tasks), timeout=bound)


def to_message(
    received: ReceivedMessage,
    decoder: Callable[[bytes], Any] | None,
    acks: PubSubAcknowledger,
) -> Message:
    """The pipeline's message for a received Pub/Sub message (see ``PubSubProducer``)."""
    pubsub = received.message
    ordering_key = pubsub.ordering_key or None
    metadata = {
        "message_id": pubsub.message_id,
        "publish_time": pubsub.publish_time,
        "attributes": dict(pubsub.attributes),
        "ordering_key": ordering_key,
        "ack_id": received.ack_id,
        "delivery_attempt": received.delivery_attempt or None,
    }
    message = decode_message(pubsub.data, decoder, acks, metadata)
    message.ordering_key = ordering_key
    return message
