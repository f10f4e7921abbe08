"""What underway's children of the Kafka, NATS and SQS rows share: the pipeline under test.

Imported as ``_underway_broker`` by ``_underway_kafka.py``, ``_underway_nats.py`` and
``_underway_sqs.py``, which run by path with underway's interpreter.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Any

from _brokers import Counter
from underway.pipelines import Message, Pipeline

__all__ = ["consume", "shape"]


def shape(capacity: int, concurrency: int) -> dict[str, int]:
    """``processors`` holding ``capacity`` messages over (at most) ``concurrency`` workers."""
    concurrency = max(1, min(concurrency, capacity))
    return {"concurrency": concurrency, "max_demand": max(1, capacity // concurrency)}


async def consume(
    producer: Any,
    counter: Counter,
    processors: dict[str, int],
    *,
    producer_concurrency: int = 1,
    identity: Callable[[Message], Hashable] | None = None,
) -> float:
    """Run ``Pipeline(producer, no-op handler)`` until N were handled, then stop it.

    With ``identity``, a message whose identity was seen already (a broker that delivers
    some messages twice) is handled but not counted again. Returns ``perf_counter()`` from
    just before ``pipeline.start()``; returns once ``pipeline.stop()`` returned (every
    message acknowledged at the broker, the producer closed).
    """
    seen: set[Hashable] = set()

    async def handle_message(message: Message) -> None:
        counter.hit()

    async def handle_distinct(message: Message) -> None:
        assert identity is not None
        key = identity(message)
        if key not in seen:
            seen.add(key)
            counter.hit()

    pipeline = Pipeline(
        producer=producer,
        handle_message=handle_message if identity is None else handle_distinct,
        processors=processors,
        producer_concurrency=producer_concurrency,
    )
    t0 = time.perf_counter()
    await pipeline.start()
    try:
        await counter.wait(t0)
    finally:
        await pipeline.stop()
    return t0
