"""Hand-written nats-py pull consumer of ``bench.pipelines``' NATS row; runs with underway's venv.

Usage::

    python _peer_natspy.py --url nats://127.0.0.1:4222 --messages 50000 --prefetch 500

Creates a fresh memory-stored stream and publishes N messages to it (untimed), then times a
plain nats-py pull consumer from just before it connects until it has handled N messages,
acknowledged each one and closed its connection. The loop is the one nats-py's documentation
gives: ``js.pull_subscribe(subject, durable)`` (a durable pull consumer with explicit acks),
then ``await psub.fetch(prefetch)`` and, per message, the no-op handler and ``await
msg.ack()``. Before closing, ``nc.flush()`` waits until the server has read every ack.
Afterwards the consumer must have nothing pending and nothing awaiting an ack. Prints one
JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import nats
from nats.errors import TimeoutError as FetchTimeout

from _brokers import Counter, body_of, measure, report
from _natscommon import Stream, nats_parser


async def handle(body: bytes) -> None:
    """The no-op handler every system of the bench runs."""


async def consume(stream: Stream, prefetch: int, counter: Counter) -> float:
    """Fetch, handle and ack until N messages were handled; returns the start time."""
    t0 = time.perf_counter()
    nc = await nats.connect(stream.url)
    try:
        js = nc.jetstream()
        psub = await js.pull_subscribe(stream.subject, durable=stream.durable, stream=stream.name)

        async def loop() -> None:
            while not counter.done.is_set():
                try:
                    messages = await psub.fetch(prefetch, timeout=5.0)
                except FetchTimeout:
                    continue
                for message in messages:
                    await handle(message.data)
                    await message.ack()
                    counter.hit()

        task = asyncio.create_task(loop())
        try:
            await counter.wait(t0)
            await task
        finally:
            task.cancel()
        await nc.flush()
    finally:
        await nc.close()
    return t0


async def _measure(args: argparse.Namespace) -> dict[str, Any]:
    stream = Stream(args, "natspy")

    async def run(counter: Counter) -> float:
        return await consume(stream, args.prefetch, counter)

    return await measure(
        args.messages,
        lambda: stream.fill(args.messages, body_of(args.body_size)),
        run,
        stream.left,
        stream.delete,
    )


def main() -> None:
    args = nats_parser().parse_args()
    out = asyncio.run(_measure(args))
    report(out, "nats-py", {"driver": "nats-py"})


if __name__ == "__main__":
    main()
