"""The SQS test server (moto), a client to inspect it, and the killed-consumer hooks.

A test module imports the fixtures (``moto_fixture``, ``admin_fixture``) to use them as
``moto`` and ``admin``. ``killed_producer(config)`` and ``killed_key(message)`` are what
:mod:`tests.integration.pipelines._killed` asks of this module.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import pytest
from aiobotocore.session import get_session

from tests.servers import Server, ServerUnavailable, start_moto, unavailable
from underway.pipelines import Message
from underway.pipelines.producers.sqs import SQSProducer

__all__ = [
    "CREDENTIALS",
    "SESSION",
    "Admin",
    "admin_fixture",
    "killed_key",
    "killed_producer",
    "moto_fixture",
]

REGION = "us-east-1"
#: One aiobotocore session for every client of the tests: it loads SQS's model once.
SESSION = get_session()
ACCESS_KEY = SECRET_KEY = "test"
CREDENTIALS = {"aws_access_key_id": ACCESS_KEY, "aws_secret_access_key": SECRET_KEY}


@pytest.fixture(name="moto", scope="module")
def moto_fixture() -> Iterator[Server]:
    """One moto server for the module (moto accepts any credentials)."""
    try:
        server = start_moto()
    except ServerUnavailable as exc:
        unavailable("SQS (moto)", str(exc))
    yield server
    server.stop()


def endpoint(server: Server) -> str:
    """The server's endpoint URL."""
    return f"http://{server.address}"


class Admin:
    """The test's own SQS client: create queues, send, count."""

    def __init__(self, client: Any, endpoint_url: str) -> None:
        self.client = client
        self.endpoint_url = endpoint_url

    async def queue(self, name: str | None = None, **attributes: Any) -> str:
        """Create a queue of this test alone (``.fifo`` names make FIFO queues)."""
        name = name or f"uw-{uuid.uuid4().hex[:12]}"
        attrs = {key: str(value) for key, value in attributes.items()}
        if name.endswith(".fifo"):
            attrs.setdefault("FifoQueue", "true")
        reply = await self.client.create_queue(QueueName=name, Attributes=attrs)
        return str(reply["QueueUrl"])

    async def queue_with_dlq(self, max_receive_count: int, **attributes: Any) -> tuple[str, str]:
        """A queue whose redrive policy moves a message to a new DLQ; ``(url, dlq_url)``."""
        dlq = await self.queue()
        reply = await self.client.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])
        policy = {
            "deadLetterTargetArn": reply["Attributes"]["QueueArn"],
            "maxReceiveCount": max_receive_count,
        }
        url = await self.queue(RedrivePolicy=json.dumps(policy), **attributes)
        return url, dlq

    async def send(
        self, url: str, bodies: Sequence[str], *, groups: Sequence[str] | None = None
    ) -> None:
        """Send ``bodies`` in batches of ten, a few batches at once, in order per group."""
        entries: list[dict[str, Any]] = []
        for i, body in enumerate(bodies):
            entry: dict[str, Any] = {"Id": str(i % 10), "MessageBody": body}
            if groups is not None:
                entry["MessageGroupId"] = groups[i]
                entry["MessageDeduplicationId"] = f"d{i}-{uuid.uuid4().hex[:8]}"
            entries.append(entry)
        batches = [entries[i : i + 10] for i in range(0, len(entries), 10)]
        if groups is not None:  # one at a time: a group's order is the sending order
            for batch in batches:
                await self._send_batch(url, batch)
            return
        limit = asyncio.Semaphore(4)

        async def one(batch: list[dict[str, Any]]) -> None:
            async with limit:
                await self._send_batch(url, batch)

        await asyncio.gather(*(one(batch) for batch in batches))

    async def _send_batch(self, url: str, batch: list[dict[str, Any]]) -> None:
        reply = await self.client.send_message_batch(QueueUrl=url, Entries=batch)
        assert not reply.get("Failed"), reply["Failed"]

    async def counts(self, url: str) -> tuple[int, int]:
        """``(visible, in flight)`` messages of the queue."""
        reply = await self.client.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
            ],
        )
        attributes = reply["Attributes"]
        return (
            int(attributes["ApproximateNumberOfMessages"]),
            int(attributes["ApproximateNumberOfMessagesNotVisible"]),
        )

    async def total(self, url: str) -> int:
        """Messages still in the queue, visible or not."""
        return sum(await self.counts(url))


@pytest.fixture(name="admin")
async def admin_fixture(moto: Server) -> AsyncIterator[Admin]:
    """An :class:`Admin` on the module's server."""
    url = endpoint(moto)
    async with SESSION.create_client(
        "sqs", region_name=REGION, endpoint_url=url, **CREDENTIALS
    ) as client:
        yield Admin(client, url)


def producer(server_url: str, queue_url: str, **options: Any) -> SQSProducer:
    """An :class:`SQSProducer` on the test server, polling briefly (tests stop quickly).

    ``close`` waits for the receives under way, so a test whose long polls prove nothing
    passes ``wait_time_seconds=0``.
    """
    options.setdefault("wait_time_seconds", 1)
    options.setdefault("session", SESSION)
    options.setdefault("reconnect_interval", 0.1)
    options.setdefault("max_reconnect_interval", 0.5)
    return SQSProducer(
        queue_url,
        endpoint_url=server_url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        **options,
    )


def killed_producer(config: dict[str, Any]) -> SQSProducer:
    """The killed consumer's producer: a short visibility, so redelivery is quick."""
    return producer(
        config["endpoint"],
        config["queue_url"],
        visibility_timeout=int(config.get("visibility", 2)),
        wait_time_seconds=int(config.get("wait", 1)),
    )


def killed_key(message: Message) -> str:
    """The message's body."""
    return str(message.data)
