"""A pipeline over a local NATS JetStream stream: decode, retry, dead-letter.

Run it with a NATS server with JetStream enabled (``nats-server -js``) on 127.0.0.1:4222,
or at ``$UNDERWAY_NATS_URL``, and the extra installed (``pip install underway[nats]``)::

    python examples/pipeline_nats.py

It creates a stream of orders and a dead-letter stream, publishes 1,000 orders (a few not
JSON, a few marked as tests, a few that fail once), consumes them with a pipeline, and
prints what went where. Both streams are deleted at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections import Counter

import nats
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from underway.pipelines import Message, Pipeline
from underway.pipelines.producers.nats import NATSProducer

URL = os.environ.get("UNDERWAY_NATS_URL", "nats://127.0.0.1:4222")
STREAM, DEAD = "underway_example_orders", "underway_example_dead"
SUBJECTS, DEAD_SUBJECT = "example.orders.>", "example.dead.orders"
ORDERS = 1_000
REGIONS = ("eu", "us", "ap")


async def setup(js: JetStreamContext) -> None:
    """Fresh streams, then the orders (by region: ``example.orders.<region>``)."""
    await cleanup(js)
    await js.add_stream(name=STREAM, subjects=[SUBJECTS])
    await js.add_stream(name=DEAD, subjects=[DEAD_SUBJECT])
    for n in range(ORDERS):
        region = REGIONS[n % 3]
        if n % 100 == 7:
            body = b"{not json"
        else:
            kind = "test" if n % 100 == 13 else "order"
            body = json.dumps({"n": n, "kind": kind, "flaky": n % 100 == 42}).encode()
        await js.publish(f"example.orders.{region}", body)


async def cleanup(js: JetStreamContext) -> None:
    for name in (STREAM, DEAD):
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(name)


async def main() -> None:
    nc = await nats.connect(URL)
    js = nc.jetstream()
    await setup(js)
    stored: Counter[str] = Counter()
    retried: set[int] = set()
    failed: list[Message] = []
    done = asyncio.Event()

    async def handle_message(message: Message) -> Message:
        order = message.data
        if order["kind"] == "test":
            return message.failed("test orders are not stored")  # dead-lettered
        if order["flaky"] and message.metadata["num_delivered"] == 1:
            retried.add(order["n"])  # comes again in 0.1 s
            return message.configure_ack(on_failure="retry", delay=0.1).failed("flaky")
        stored[message.metadata["subject"].rsplit(".", 1)[1]] += 1
        check_done()
        return message

    def handle_failed(messages: list[Message]) -> None:
        failed.extend(m for m in messages if m.reason != "flaky")
        check_done()

    def check_done() -> None:
        if sum(stored.values()) + len(failed) >= ORDERS:
            done.set()

    producer = NATSProducer(
        STREAM,
        "example",
        servers=URL,
        decoder=json.loads,
        on_failure="dead_letter",
        dead_letter_subject=DEAD_SUBJECT,
    )
    pipeline = Pipeline(
        producer=producer,
        handle_message=handle_message,
        processors={"concurrency": 4, "max_demand": 50},
        handle_failed=handle_failed,
    )
    async with pipeline:
        await asyncio.wait_for(done.wait(), 60)

    reasons = Counter(
        m.reason if isinstance(m.reason, str) else type(m.reason).__name__ for m in failed
    )
    print("stored per region:", dict(sorted(stored.items())))
    print("retried once, then stored:", len(retried))
    print("failed:", dict(sorted(reasons.items())))
    dead = await js.stream_info(DEAD)
    consumer = await js.consumer_info(STREAM, "example")
    print(
        "dead-lettered:",
        dead.state.messages,
        "left unacknowledged:",
        consumer.num_ack_pending,
        "left to deliver:",
        consumer.num_pending,
    )
    await cleanup(js)
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main())
