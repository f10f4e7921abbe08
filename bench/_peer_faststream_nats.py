"""FastStream's NATS JetStream pull subscriber in ``bench.pipelines``; runs in FastStream's venv.

Usage::

    python _peer_faststream_nats.py --messages 50000 --prefetch 500 --variant pull
    python _peer_faststream_nats.py --messages 50000 --prefetch 500 --variant batch

Creates a fresh memory-stored stream and publishes N messages to it (untimed), then times a
``NatsBroker`` with one JetStream pull subscriber from just before ``broker.start()`` until
the handler has counted N messages and ``broker.stop()`` returned (every ack sent, the
connection drained and closed). The subscriber is ``@broker.subscriber(subject,
stream=JStream(name, declare=False), durable=..., pull_sub=PullSub(...))`` with FastStream's
default acknowledgement policy for NATS (``REJECT_ON_ERROR``: ack once the handler
returned). Variants, both from FastStream's documentation:

- ``pull``: ``PullSub(batch_size=prefetch)``: up to ``prefetch`` messages per pull request,
  the handler once per message, each acked after it;
- ``batch``: ``PullSub(batch_size=prefetch, batch=True)``: the handler once per batch (the
  list of bodies), every message of it acked after the handler.

The broker is built with ``logger=None`` (no log line per message) and ``apply_types=False``
(no argument validation). Afterwards the durable consumer must have nothing pending and
nothing awaiting an ack. Prints one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from faststream.nats import JStream, NatsBroker, PullSub

from _brokers import Counter, body_of, measure, report
from _natscommon import Stream, nats_parser


def build(stream: Stream, prefetch: int, variant: str, counter: Counter) -> NatsBroker:
    """The broker with its one pull subscriber (the stream exists: not declared again)."""
    broker = NatsBroker(stream.url, logger=None, apply_types=False)
    # Typed here: with ``pull_sub`` FastStream's overloads give the decorator as ``Any``.
    subscribed: Callable[[Callable[[Any], Awaitable[None]]], object] = broker.subscriber(
        stream.subject,
        stream=JStream(stream.name, declare=False),
        durable=stream.durable,
        pull_sub=PullSub(batch_size=prefetch, batch=variant == "batch"),
    )

    if variant == "batch":

        @subscribed
        async def handle_batch(bodies: list[Any]) -> None:
            counter.hit(len(bodies))

    else:

        @subscribed
        async def handle(body: Any) -> None:
            counter.hit()

    return broker


async def _measure(args: argparse.Namespace) -> dict[str, Any]:
    stream = Stream(args, "faststream")

    async def consume(counter: Counter) -> float:
        broker = build(stream, args.prefetch, args.variant, counter)
        t0 = time.perf_counter()
        await broker.start()
        try:
            await counter.wait(t0)
        finally:
            await broker.stop()
        return t0

    return await measure(
        args.messages,
        lambda: stream.fill(args.messages, body_of(args.body_size)),
        consume,
        stream.left,
        stream.delete,
    )


def main() -> None:
    p = nats_parser()
    p.add_argument("--variant", choices=["pull", "batch"], default="pull")
    args = p.parse_args()
    out = asyncio.run(_measure(args))
    out["variant"] = args.variant
    report(out, "faststream", {"driver": "nats-py"})


if __name__ == "__main__":
    main()
