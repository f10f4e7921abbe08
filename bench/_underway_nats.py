"""underway side of ``bench.pipelines``' NATS row: a Pipeline fed by ``NATSProducer``.

Usage::

    python _underway_nats.py --url nats://127.0.0.1:4222 --messages 50000 --prefetch 500

Creates a fresh memory-stored stream and publishes N messages to it (untimed), then times
``Pipeline(producer=NATSProducer(stream, durable, subject=..., batch=prefetch),
handle_message=noop, processors=...)`` from just before ``pipeline.start()`` until the
handler has run N times and ``pipeline.stop()`` returned (every ack confirmed by the server,
the connection closed). The producer creates the durable pull consumer at start, as the
peers do; the processors hold ``prefetch`` messages (``concurrency * max_demand``), so one
pull asks for at most ``prefetch``, the peers' batch size. Afterwards the consumer must have
nothing pending and nothing awaiting an ack. Prints one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from _brokers import Counter, body_of, measure, report, unavailable
from _natscommon import Stream, nats_parser
from _underway_broker import consume, shape


async def _measure(args: argparse.Namespace) -> dict[str, Any]:
    try:
        from underway.pipelines.producers.nats import NATSProducer
    except ImportError as exc:
        unavailable(f"underway.pipelines.producers.nats: {exc}")
    stream = Stream(args, "underway")
    processors = shape(args.prefetch, args.concurrency)

    async def run(counter: Counter) -> float:
        producer = NATSProducer(
            stream.name,
            stream.durable,
            subject=stream.subject,
            servers=stream.url,
            batch=args.prefetch,
        )
        return await consume(producer, counter, processors)

    out = await measure(
        args.messages,
        lambda: stream.fill(args.messages, body_of(args.body_size)),
        run,
        stream.left,
        stream.delete,
    )
    out["processors"] = processors
    return out


def main() -> None:
    p = nats_parser()
    p.add_argument("--concurrency", type=int, default=10, help="processors (at most)")
    args = p.parse_args()
    out = asyncio.run(_measure(args))
    report(out, "underway", {"driver": "nats-py"})


if __name__ == "__main__":
    main()
