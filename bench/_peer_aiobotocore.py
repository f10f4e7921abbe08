"""Hand-written aiobotocore SQS consumer of ``bench.pipelines``' SQS row; underway's venv.

Usage::

    python _peer_aiobotocore.py --endpoint http://127.0.0.1:5000 --messages 2000 --receivers 4

Creates a fresh standard queue and sends N messages (untimed), then times a plain aiobotocore
consumer from just before it creates its client until it has handled and deleted N messages
and closed the client. It runs ``--receivers`` loops at once on one client, each as AWS's
documentation describes the consumer: ``receive_message(MaxNumberOfMessages=10,
WaitTimeSeconds=wait)`` (a long poll), the no-op handler on each message, then one
``delete_message_batch`` for the messages it handled. Once N distinct messages were handled,
the receives under way get 2 s to return (what they bring is handled and deleted: copies of
handled messages, which a standard queue may deliver), as ``SQSProducer.close`` gives them,
then the loops still waiting in a receive are cancelled. Afterwards the queue must hold no
message, visible or in flight. Prints one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from _brokers import Counter, body_of, measure, report
from _sqscommon import Queue, sqs_parser

CLOSE_GRACE = 2.0
"""Seconds receives under way get to return once N messages were handled (as underway's)."""


async def handle(body: str) -> None:
    """The no-op handler every system of the bench runs."""


async def consume(queue: Queue, receivers: int, wait: int, counter: Counter) -> float:
    """Receive, handle and delete in ``receivers`` loops; returns the start time."""
    t0 = time.perf_counter()
    async with queue.client() as client:
        receiving: set[asyncio.Task[None]] = set()
        seen: set[str] = set()

        async def loop() -> None:
            task = asyncio.current_task()
            assert task is not None
            while not counter.done.is_set():
                receiving.add(task)
                try:
                    answer = await client.receive_message(
                        QueueUrl=queue.url, MaxNumberOfMessages=10, WaitTimeSeconds=wait
                    )
                finally:
                    receiving.discard(task)
                messages = answer.get("Messages", [])
                if not messages:
                    continue
                for message in messages:
                    await handle(message["Body"])
                    if message["MessageId"] not in seen:  # standard queues may deliver twice
                        seen.add(message["MessageId"])
                        counter.hit()
                entries = [
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(messages)
                ]
                deleted = await client.delete_message_batch(QueueUrl=queue.url, Entries=entries)
                if deleted.get("Failed"):
                    raise SystemExit(f"delete_message_batch failed: {deleted['Failed']}")

        tasks = [asyncio.create_task(loop()) for _ in range(receivers)]
        try:
            await counter.wait(t0)
            # Receives under way may still bring messages (copies of handled ones, on a
            # standard queue): they get a short grace to return, and their messages are
            # handled and deleted; the receives still waiting after it are cancelled.
            await asyncio.wait(tasks, timeout=CLOSE_GRACE)
            for task in receiving:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException) and not isinstance(
                    result, asyncio.CancelledError
                ):
                    raise result
        finally:
            for task in tasks:
                task.cancel()
    return t0


async def _measure(args: argparse.Namespace) -> dict[str, Any]:
    queue = Queue(args, "aiobotocore")

    async def run(counter: Counter) -> float:
        return await consume(queue, args.receivers, args.wait, counter)

    return await measure(
        args.messages,
        lambda: queue.fill(args.messages, body_of(args.body_size)),
        run,
        queue.left,
        queue.delete,
    )


def main() -> None:
    args = sqs_parser().parse_args()
    out = asyncio.run(_measure(args))
    out["receivers"] = args.receivers
    report(out, "aiobotocore", {"driver": "aiobotocore"})


if __name__ == "__main__":
    main()
