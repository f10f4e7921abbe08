"""FastStream side of ``bench.pipelines``; runs in its own venv (``faststream[rabbit]``).

Usage::

    python _peer_faststream.py --messages 50000 --prefetch 100 --variant plain
    python _peer_faststream.py --messages 50000 --prefetch 500 --variant typed

Declares a fresh queue, fills it with N transient messages (untimed), then times a
``RabbitBroker`` with one ``@broker.subscriber`` from just before ``broker.start()`` until
the handler has run N times and ``broker.stop()`` returned (every acknowledgement sent, the
connection closed). The subscriber takes the queue with its own channel,
``Channel(prefetch_count=prefetch)``, and FastStream's default acknowledgement policy for
RabbitMQ (``REJECT_ON_ERROR``: ack once the handler returned). The broker is built with
``logger=None``, FastStream's documented way to turn off its two log lines per message (the
other systems log nothing per message). Variants of the no-op handler:

- ``typed``: ``async def handle(body: bytes)``, FastDepends (pydantic) checks the argument,
  FastStream's default;
- ``plain``: ``RabbitBroker(apply_types=False)``, ``async def handle(body)``; FastStream
  calls the handler with the decoded body and no argument validation (its fastest path).

FastStream's own CLI (``faststream run``) would pick uvloop only if it were installed;
``faststream[rabbit]`` does not install it, so this runs on the standard asyncio loop like
the other systems. Afterwards a passive declare on another connection must find the queue
empty. Prints one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from faststream.rabbit import Channel, RabbitBroker, RabbitQueue

from _rabbitcommon import Counter, body_of, measure, parser, queue_name, report


def build(url: str, queue: str, prefetch: int, variant: str, counter: Counter) -> RabbitBroker:
    """The broker with its one subscriber, as FastStream's documentation writes it."""
    broker = RabbitBroker(url, logger=None, apply_types=variant == "typed")
    # The same queue arguments as every system of the bench: a durable classic queue.
    subscribed = broker.subscriber(
        RabbitQueue(queue, durable=True, auto_delete=False),
        channel=Channel(prefetch_count=prefetch),
    )

    if variant == "typed":

        @subscribed
        async def handle_typed(body: bytes) -> None:
            counter.hit()

    else:

        @subscribed
        async def handle_plain(body: Any) -> None:
            counter.hit()

    return broker


async def _measure(args: argparse.Namespace) -> dict[str, Any]:
    queue = queue_name(args, "faststream")

    async def consume(counter: Counter) -> float:
        broker = build(args.url, queue, args.prefetch, args.variant, counter)
        t0 = time.perf_counter()
        await broker.start()
        try:
            await counter.wait(t0)
        finally:
            await broker.stop()
        return t0

    return await measure(args.url, queue, args.messages, body_of(args.body_size), consume)


def main() -> None:
    p = parser()
    p.add_argument("--variant", choices=["typed", "plain"], default="plain")
    args = p.parse_args()
    out = asyncio.run(_measure(args))
    out["variant"] = args.variant
    report(out, "faststream")


if __name__ == "__main__":
    main()
