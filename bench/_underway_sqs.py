"""underway side of ``bench.pipelines``' SQS row: a Pipeline fed by ``SQSProducer``.

Usage::

    python _underway_sqs.py --endpoint http://127.0.0.1:5000 --messages 1000 --receivers 4

Creates a fresh standard queue and sends N messages (untimed), then times
``Pipeline(producer=SQSProducer(queue_url, endpoint_url=...), handle_message=noop,
processors=..., producer_concurrency=receivers)`` from just before ``pipeline.start()``
until the handler has seen N distinct messages and ``pipeline.stop()`` returned (every
message deleted, the client closed). Each fetch is one ``ReceiveMessage`` of up to 10
messages with the producer's default long poll (20 s), and ``producer_concurrency`` runs as
many at once as the aiobotocore loop has receive loops. A standard queue may deliver a
message twice, so the handler counts distinct ``message_id``s, as the loop does. Afterwards
the queue must hold no message, visible or in flight. Prints one JSON object as the last
line.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from _brokers import Counter, body_of, measure, report, unavailable
from _sqscommon import REGION, Queue, sqs_parser
from _underway_broker import consume, shape


async def _measure(args: argparse.Namespace) -> dict[str, Any]:
    try:
        from underway.pipelines.producers.sqs import SQSProducer
    except ImportError as exc:
        unavailable(f"underway.pipelines.producers.sqs: {exc}")
    queue = Queue(args, "underway")
    processors = shape(args.prefetch, args.concurrency)

    async def run(counter: Counter) -> float:
        producer = SQSProducer(
            queue.url, region_name=REGION, endpoint_url=queue.endpoint, wait_time_seconds=args.wait
        )
        return await consume(
            producer,
            counter,
            processors,
            producer_concurrency=args.receivers,
            identity=lambda message: message.metadata["message_id"],
        )

    out = await measure(
        args.messages,
        lambda: queue.fill(args.messages, body_of(args.body_size)),
        run,
        queue.left,
        queue.delete,
    )
    out["processors"] = processors
    out["receivers"] = args.receivers
    return out


def main() -> None:
    p = sqs_parser()
    p.add_argument("--concurrency", type=int, default=10, help="processors (at most)")
    args = p.parse_args()
    out = asyncio.run(_measure(args))
    report(out, "underway", {"driver": "aiobotocore"})


if __name__ == "__main__":
    main()
