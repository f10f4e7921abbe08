"""A pipeline over an SQS queue with a dead-letter queue: decode, handle, redrive poison.

Run it against a local SQS (moto: ``moto_server -p 5000``; or ElasticMQ, LocalStack) with the
extra installed (``pip install underway[sqs]``)::

    UNDERWAY_SQS_ENDPOINT=http://127.0.0.1:5000 python examples/pipeline_sqs.py

It creates a queue whose redrive policy moves a message to a dead-letter queue after two
receives, sends 100 orders (three of them poison), consumes them, and prints a summary:
the poison orders fail, are left to the queue (``on_failure="leave"``), come back once
after their visibility timeout and then move to the dead-letter queue.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from typing import Any

from aiobotocore.session import get_session

from underway.pipelines import Message, Pipeline
from underway.pipelines.producers.sqs import SQSProducer

ENDPOINT = os.environ.get("UNDERWAY_SQS_ENDPOINT", "http://127.0.0.1:5000")
CLIENT: dict[str, Any] = {
    "region_name": "us-east-1",
    "endpoint_url": ENDPOINT,
    "aws_access_key_id": "test",  # a local server accepts any credentials
    "aws_secret_access_key": "test",
}
ORDERS = 100
POISON = {13, 42, 77}


async def setup(client: Any) -> tuple[str, str]:
    """A fresh queue and its dead-letter queue; the orders sent. Returns both URLs."""
    name = f"underway-example-{uuid.uuid4().hex[:8]}"
    dead = (await client.create_queue(QueueName=f"{name}-dead"))["QueueUrl"]
    arn = (await client.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"]))[
        "Attributes"
    ]["QueueArn"]
    redrive = {"deadLetterTargetArn": arn, "maxReceiveCount": 2}
    queue = (
        await client.create_queue(
            QueueName=name,
            Attributes={"VisibilityTimeout": "1", "RedrivePolicy": json.dumps(redrive)},
        )
    )["QueueUrl"]
    bodies = [json.dumps({"order": n, "poison": n in POISON}) for n in range(ORDERS)]
    for start in range(0, ORDERS, 10):
        entries = [
            {"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies[start : start + 10])
        ]
        await client.send_message_batch(QueueUrl=queue, Entries=entries)
    return queue, dead


async def count(client: Any, url: str) -> int:
    """Messages in the queue, visible or in flight."""
    attributes = (
        await client.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
            ],
        )
    )["Attributes"]
    return sum(int(value) for value in attributes.values())


async def main() -> None:
    async with get_session().create_client("sqs", **CLIENT) as client:
        queue, dead = await setup(client)
        handled: set[int] = set()
        deleted: set[int] = set()

        def handle_message(message: Message) -> Message:
            handled.add(message.data["order"])
            if message.data["poison"]:
                return message.failed("poison order")  # left: redriven after 2 receives
            deleted.add(message.data["order"])
            return message

        pipeline = Pipeline(
            producer=SQSProducer(
                queue, **CLIENT, decoder=json.loads, wait_time_seconds=1, on_failure="leave"
            ),
            handle_message=handle_message,
            processors={"concurrency": 4, "max_demand": 10},
            producer_concurrency=2,
        )
        async with pipeline:
            for _ in range(600):  # at most a minute
                if len(deleted) == ORDERS - len(POISON) and await count(client, dead) == len(
                    POISON
                ):
                    break
                await asyncio.sleep(0.1)
        summary = {
            "handled": len(handled),
            "deleted": len(deleted),
            "dead_lettered": await count(client, dead),
            "left": await count(client, queue),
        }
        for url in (queue, dead):
            await client.delete_queue(QueueUrl=url)
    print(json.dumps(summary))


if __name__ == "__main__":
    asyncio.run(main())
