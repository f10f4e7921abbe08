"""The Pub/Sub emulator for the tests, an admin client to set it up, and the killed-consumer hooks.

``emulator_fixture`` (imported as ``emulator``) is one emulator for the whole test session,
started on first use and stopped (with its java child, and reaped) when the interpreter
exits; every test makes its own topics and subscriptions, so they never meet. A test that
kills its emulator uses ``own_emulator_fixture`` (``own_emulator``) instead. A missing
``gcloud`` is a skip, or a failure under ``CI=true``. :class:`Admin` creates topics and
subscriptions, publishes in batches and pulls as a test's own subscriber; it talks to the
emulator over an insecure channel, so no process environment is set.

The emulator accepts ack deadlines below the service's 10 s floor: a test that must see a
message come back (or not) after its deadline gives its subscription a short one.
"""

from __future__ import annotations

import atexit
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import grpc
import pytest
from google.pubsub_v1 import (
    PublisherAsyncClient,
    PubsubMessage,
    ReceivedMessage,
    SubscriberAsyncClient,
)
from google.pubsub_v1.services.publisher.transports import PublisherGrpcAsyncIOTransport
from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcAsyncIOTransport

from tests.servers import Server, ServerUnavailable, start_pubsub_emulator, unavailable
from underway.pipelines import Message
from underway.pipelines.producers.pubsub import PubSubProducer

__all__ = [
    "PROJECT",
    "Admin",
    "admin_fixture",
    "emulator_fixture",
    "killed_key",
    "killed_producer",
    "own_emulator_fixture",
]

PROJECT = "underway-test"
PUBLISH_BATCH = 1000


_shared: list[Server] = []


def _start() -> Server:
    try:
        return start_pubsub_emulator()
    except ServerUnavailable as exc:
        unavailable("Pub/Sub emulator", str(exc))


@pytest.fixture(name="emulator", scope="module")
def emulator_fixture() -> Server:
    """The Pub/Sub emulator shared by every Pub/Sub test of the session (never killed)."""
    if not _shared:
        server = _start()
        atexit.register(server.stop)
        _shared.append(server)
    return _shared[0]


@pytest.fixture(name="own_emulator")
def own_emulator_fixture() -> Iterator[Server]:
    """An emulator of the test alone, which it may kill; stopped and reaped after it."""
    server = _start()
    try:
        yield server
    finally:
        server.stop()


class Admin:
    """A test's own publisher and subscriber on the emulator at ``host``."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.publisher = PublisherAsyncClient(
            transport=PublisherGrpcAsyncIOTransport(channel=grpc.aio.insecure_channel(host))
        )
        self.subscriber = SubscriberAsyncClient(
            transport=SubscriberGrpcAsyncIOTransport(channel=grpc.aio.insecure_channel(host))
        )

    async def close(self) -> None:
        """Close both channels."""
        await self.publisher.__aexit__(None, None, None)  # type: ignore[no-untyped-call]
        await self.subscriber.__aexit__(None, None, None)  # type: ignore[no-untyped-call]

    async def topic(self, path: str | None = None) -> str:
        """A new topic (of this test alone unless ``path`` is given); returns its path."""
        path = path or f"projects/{PROJECT}/topics/t-{uuid.uuid4().hex[:12]}"
        await self.publisher.create_topic(name=path)
        return path

    async def subscription(self, topic: str, path: str | None = None, **options: Any) -> str:
        """A new subscription to ``topic`` (``options`` as in ``Subscription``); its path.

        Its ack deadline is 10 s unless ``ack_deadline_seconds`` is given.
        """
        path = path or f"projects/{PROJECT}/subscriptions/s-{uuid.uuid4().hex[:12]}"
        await self.subscriber.create_subscription(
            request={"name": path, "topic": topic, "ack_deadline_seconds": 10, **options}
        )
        return path

    async def publish(
        self,
        topic: str,
        payloads: Sequence[bytes],
        *,
        ordering_keys: Sequence[str] | None = None,
        attributes: dict[str, str] | None = None,
    ) -> list[str]:
        """Publish ``payloads`` in batches; returns their message ids in order."""
        ids: list[str] = []
        for start in range(0, len(payloads), PUBLISH_BATCH):
            batch = [
                PubsubMessage(
                    data=payload,
                    ordering_key=ordering_keys[start + i] if ordering_keys else "",
                    attributes=attributes or {},
                )
                for i, payload in enumerate(payloads[start : start + PUBLISH_BATCH])
            ]
            response = await self.publisher.publish(topic=topic, messages=batch)
            ids += list(response.message_ids)
        return ids

    async def pull(
        self, subscription: str, *, ack: bool = True, wait: bool = False
    ) -> list[ReceivedMessage]:
        """One pull of up to 1,000 messages; returns at once unless ``wait``.

        With ``ack`` the messages are acknowledged; else they are nacked (released now).
        """
        with warnings.catch_warnings():
            # return_immediately is deprecated for consumers; a test's check wants it.
            warnings.simplefilter("ignore", DeprecationWarning)
            response = await self.subscriber.pull(
                request={
                    "subscription": subscription,
                    "max_messages": 1000,
                    "return_immediately": not wait,
                },
                timeout=10.0,
            )
        received = list(response.received_messages)
        ack_ids = [r.ack_id for r in received]
        if ack_ids and ack:
            await self.subscriber.acknowledge(subscription=subscription, ack_ids=ack_ids)
        elif ack_ids:
            await self.subscriber.modify_ack_deadline(
                subscription=subscription, ack_ids=ack_ids, ack_deadline_seconds=0
            )
        return received


@pytest.fixture(name="admin")
async def admin_fixture(emulator: Server) -> AsyncIterator[Admin]:
    """The test's :class:`Admin` on the shared emulator."""
    admin = Admin(emulator.address)
    yield admin
    await admin.close()


def killed_producer(config: dict[str, Any]) -> PubSubProducer:
    """The producer of the killed consumer (``config``: ``subscription``, ``host``)."""
    return PubSubProducer(config["subscription"], emulator_host=config["host"])


def killed_key(message: Message) -> str:
    """What the killed consumer writes for a message: its payload."""
    data: bytes = message.data
    return data.decode()
