"""Hand-written aio-pika consumer side of ``bench.pipelines``; runs with underway's interpreter.

Usage::

    python _peer_aiopika.py --messages 50000 --prefetch 100 --style iterator
    python _peer_aiopika.py --messages 50000 --prefetch 500 --style callback

Declares a fresh queue, fills it with N transient messages (untimed), then times a plain
aio-pika consumer from just before it connects until it has handled N messages, acked
each one with ``await message.ack()``, and closed its connection. Two styles, both as
aio-pika's documentation shows them: ``iterator`` (``async with queue.iterator()``, one
message after the other) and ``callback`` (``queue.consume(callback)``; aio-pika runs each
delivery in a task of its own, so up to ``prefetch`` handlers run at once). The channel's
QoS is ``prefetch``. Afterwards a passive declare on another connection must find the
queue empty. Prints one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from _rabbitcommon import Counter, body_of, declare, measure, parser, queue_name, report


async def handle(body: bytes) -> None:
    """The no-op handler every system of the bench runs."""


async def iterator_style(url: str, queue: str, prefetch: int, counter: Counter) -> float:
    """Consume with ``queue.iterator()``, acknowledging each message after the handler."""
    t0 = time.perf_counter()
    connection = await aio_pika.connect_robust(url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        declared = await declare(channel, queue)

        async def loop() -> None:
            async with declared.iterator() as messages:
                async for message in messages:
                    await handle(message.body)
                    await message.ack()
                    counter.hit()
                    if counter.done.is_set():
                        break

        task = asyncio.create_task(loop())
        try:
            await counter.wait(t0)  # fails the run if the messages stop coming
            await task
        finally:
            task.cancel()
    return t0


async def callback_style(url: str, queue: str, prefetch: int, counter: Counter) -> float:
    """Consume with ``queue.consume(callback)``, acknowledging each message after the handler."""

    async def on_message(message: AbstractIncomingMessage) -> None:
        await handle(message.body)
        await message.ack()
        counter.hit()

    t0 = time.perf_counter()
    connection = await aio_pika.connect_robust(url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        declared = await declare(channel, queue)
        tag = await declared.consume(on_message)
        await counter.wait(t0)
        await declared.cancel(tag)
    return t0


async def _measure(args: argparse.Namespace) -> dict[str, object]:
    queue = queue_name(args, "aiopika")
    style = iterator_style if args.style == "iterator" else callback_style

    async def consume(counter: Counter) -> float:
        return await style(args.url, queue, args.prefetch, counter)

    return await measure(args.url, queue, args.messages, body_of(args.body_size), consume)


def main() -> None:
    p = parser()
    p.add_argument("--style", choices=["iterator", "callback"], default="callback")
    args = p.parse_args()
    out = asyncio.run(_measure(args))
    out["style"] = args.style
    report(out, "aio-pika")


if __name__ == "__main__":
    main()
