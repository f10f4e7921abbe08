"""A pipeline over a Pub/Sub subscription on the local emulator: decode, retry, drop.

Run it with the emulator (``gcloud beta emulators pubsub start --host-port=127.0.0.1:8085``)
and the extra installed (``pip install underway[pubsub]``)::

    PUBSUB_EMULATOR_HOST=127.0.0.1:8085 python examples/pipeline_pubsub.py

It creates a topic and a subscription of its own, publishes 1,000 events (a few of them not
JSON, a few failing on their first delivery), consumes them with a pipeline, prints what
happened, and deletes the topic and the subscription.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections import Counter

import grpc
from google.pubsub_v1 import PublisherAsyncClient, PubsubMessage, SubscriberAsyncClient
from google.pubsub_v1.services.publisher.transports import PublisherGrpcAsyncIOTransport
from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcAsyncIOTransport

from underway.errors import DecodeError
from underway.pipelines import Message, Pipeline
from underway.pipelines.producers.pubsub import PubSubProducer

HOST = os.environ.get("PUBSUB_EMULATOR_HOST", "127.0.0.1:8085")
PROJECT = "underway-example"
EVENTS = 1_000


async def setup(topic: str, subscription: str) -> None:
    """Create the topic and the subscription, and publish the events."""
    channel = grpc.aio.insecure_channel(HOST)
    publisher = PublisherAsyncClient(transport=PublisherGrpcAsyncIOTransport(channel=channel))
    subscriber = SubscriberAsyncClient(transport=SubscriberGrpcAsyncIOTransport(channel=channel))
    await publisher.create_topic(name=topic)
    await subscriber.create_subscription(name=subscription, topic=topic)
    messages = [
        PubsubMessage(
            data=b"{not json"
            if n % 100 == 7
            else json.dumps({"n": n, "tenant": f"t{n % 3}"}).encode()
        )
        for n in range(EVENTS)
    ]
    await publisher.publish(topic=topic, messages=messages)
    await channel.close()


async def teardown(topic: str, subscription: str) -> None:
    """Delete the subscription and the topic."""
    channel = grpc.aio.insecure_channel(HOST)
    subscriber = SubscriberAsyncClient(transport=SubscriberGrpcAsyncIOTransport(channel=channel))
    publisher = PublisherAsyncClient(transport=PublisherGrpcAsyncIOTransport(channel=channel))
    await subscriber.delete_subscription(subscription=subscription)
    await publisher.delete_topic(topic=topic)
    await channel.close()


async def main() -> None:
    suffix = uuid.uuid4().hex[:8]
    topic = f"projects/{PROJECT}/topics/events-{suffix}"
    subscription = f"projects/{PROJECT}/subscriptions/events-{suffix}"
    await setup(topic, subscription)
    handled: Counter[int] = Counter()
    tenants: set[str] = set()
    attempts: Counter[int] = Counter()
    undecodable = 0
    done = asyncio.Event()

    def check_done() -> None:
        if len(handled) + undecodable >= EVENTS:
            done.set()

    async def handle_message(message: Message) -> Message:
        n = message.data["n"]
        attempts[n] += 1
        if n % 50 == 13 and attempts[n] == 1:
            return message.failed("a flaky dependency")  # nacked: delivered again now
        handled[n] += 1
        tenants.add(message.data["tenant"])
        check_done()
        return message

    def handle_failed(messages: list[Message]) -> None:
        nonlocal undecodable
        for message in messages:
            if isinstance(message.reason, DecodeError):
                undecodable += 1
                message.configure_ack(on_failure="ack")  # no retry will decode it: drop
        check_done()

    pipeline = Pipeline(
        producer=PubSubProducer(subscription, emulator_host=HOST, decoder=json.loads),
        handle_message=handle_message,
        handle_failed=handle_failed,
        processors={"concurrency": 4, "max_demand": 50},
    )
    try:
        async with pipeline:
            await asyncio.wait_for(done.wait(), 60)
    finally:
        await teardown(topic, subscription)
    print(f"handled: {len(handled)} event(s) in {len(tenants)} tenant(s)")
    print(f"failed once, then handled: {sum(1 for count in attempts.values() if count > 1)}")
    print(f"undecodable, dropped: {undecodable}")


if __name__ == "__main__":
    asyncio.run(main())
