"""underway side of ``bench.pipelines``: a Pipeline on RabbitMQ, and in memory.

Usage::

    python _underway_rabbit.py --phase rabbitmq --messages 50000 --prefetch 100
    python _underway_rabbit.py --phase rabbitmq --messages 50000 --prefetch 500 --batch-size 100
    python _underway_rabbit.py --phase memory --messages 200000 --concurrency 10 --max-demand 100

``rabbitmq``: declares a fresh queue, fills it with N transient messages (untimed), then
times ``Pipeline(producer=RabbitMQProducer(queue, prefetch=P), handle_message=noop, ...)``
from just before ``pipeline.start()`` until the handler has run N times and
``pipeline.stop()`` returned (every acknowledgement sent, the connection closed). The
processors hold as many messages as the prefetch (``concurrency * max_demand == P``). With
``--batch-size`` every message goes to one batcher, a no-op ``handle_batch`` counts them, and
they are acked once their batch was handled. Afterwards a passive declare on another
connection must find the queue empty.

``memory``: ``DummyProducer`` pre-filled with N payloads, no-op handlers, timed from just
before ``pipeline.start()`` until its acknowledger has seen N messages.

Prints one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from _rabbitcommon import (
    TIMEOUT,
    Counter,
    body_of,
    measure,
    parser,
    queue_name,
    report,
    unavailable,
)
from underway.pipelines import BatchInfo, DummyProducer, Message, Pipeline

BATCHER = "bench"


def _shape(capacity: int, concurrency: int) -> dict[str, int]:
    """``processors`` holding ``capacity`` messages over (at most) ``concurrency`` workers."""
    concurrency = max(1, min(concurrency, capacity))
    return {"concurrency": concurrency, "max_demand": max(1, capacity // concurrency)}


def build(
    producer: Any,
    counter: Counter,
    processors: dict[str, int],
    batch_size: int | None,
    *,
    sync: bool = False,
) -> Pipeline:
    """The pipeline under test: no-op handlers that count, optionally one batcher.

    The handlers are ``async def`` like the other systems' (``sync``: a plain ``def``
    ``handle_message``, which the pipeline calls without creating a coroutine).
    """
    if batch_size is None:

        async def handle_message(message: Message) -> None:
            counter.hit()

        def handle_message_sync(message: Message) -> None:
            counter.hit()

        handler = handle_message_sync if sync else handle_message
        return Pipeline(producer=producer, handle_message=handler, processors=processors)

    async def to_batcher(message: Message) -> Message:
        return message.put_batcher(BATCHER)

    async def handle_batch(batcher: str, messages: list[Message], info: BatchInfo) -> None:
        counter.hit(len(messages))

    return Pipeline(
        producer=producer,
        handle_message=to_batcher,
        processors=processors,
        batchers={BATCHER: {"batch_size": batch_size}},
        handle_batch=handle_batch,
    )


async def rabbitmq(args: argparse.Namespace) -> dict[str, Any]:
    """Consume N messages from a fresh queue through a pipeline."""
    try:
        from underway.pipelines.producers.rabbitmq import RabbitMQProducer
    except ImportError as exc:
        unavailable(f"underway.pipelines.producers.rabbitmq: {exc}")
    queue = queue_name(args, "underway")
    processors = _shape(args.prefetch, args.concurrency)

    async def consume(counter: Counter) -> float:
        producer = RabbitMQProducer(queue, url=args.url, prefetch=args.prefetch)
        pipeline = build(producer, counter, processors, args.batch_size)
        t0 = time.perf_counter()
        await pipeline.start()
        try:
            await counter.wait(t0)
        finally:
            await pipeline.stop()
        return t0

    out = await measure(args.url, queue, args.messages, body_of(args.body_size), consume)
    out["processors"] = processors
    return out


async def memory(args: argparse.Namespace) -> dict[str, Any]:
    """Push N payloads through a pipeline fed by a DummyProducer."""
    producer = DummyProducer(range(args.messages))
    counter = Counter(args.messages)
    processors = {"concurrency": args.concurrency, "max_demand": args.max_demand}
    pipeline = build(producer, counter, processors, args.batch_size, sync=args.handler == "sync")
    t0 = time.perf_counter()
    await pipeline.start()
    try:
        await producer.acknowledger.wait_for(args.messages, timeout=TIMEOUT)
        acked_s = time.perf_counter() - t0
    finally:
        await pipeline.stop()
    if counter.count != args.messages:
        raise SystemExit(f"handled {counter.count} of {args.messages}")
    return {
        "handled_s": counter.at - t0,
        "acked_s": acked_s,
        "handled": counter.count,
        "processors": processors,
    }


def main() -> None:
    p = parser()
    p.add_argument("--phase", choices=["rabbitmq", "memory"], default="rabbitmq")
    p.add_argument("--batch-size", type=int, default=None, help="one batcher of this size")
    p.add_argument(
        "--concurrency", type=int, default=10, help="processors (rabbitmq: at most this many)"
    )
    p.add_argument("--max-demand", type=int, default=100, help="memory phase only")
    p.add_argument("--handler", choices=["async", "sync"], default="async", help="memory only")
    args = p.parse_args()
    run = rabbitmq if args.phase == "rabbitmq" else memory
    out = asyncio.run(run(args))
    out["phase"] = args.phase
    out["batch_size"] = args.batch_size
    out["handler"] = args.handler
    report(out, "underway")


if __name__ == "__main__":
    main()
