"""NATS JetStream pieces of ``bench.pipelines``' NATS row: fill a fresh stream, count what is left.

Imported as ``_natscommon`` by the scripts that run by path; needs ``nats-py`` (underway's
venv and FastStream's both have it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import nats
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NotFoundError

from _brokers import TIMEOUT, fresh_name, parser

__all__ = ["Stream", "nats_parser"]

CHUNK = 1000


def nats_parser() -> argparse.ArgumentParser:
    """The common options plus the server's URL."""
    p = parser()
    address = os.environ.get("UNDERWAY_NATS_ADDR", "127.0.0.1:4222")
    p.add_argument("--url", default=f"nats://{address}", help="the NATS server")
    return p


class Stream:
    """A fresh memory-stored stream, its one subject and the durable pull consumer's name."""

    def __init__(self, args: argparse.Namespace, system: str) -> None:
        self.url: str = args.url
        self.name = fresh_name(args, system)
        self.subject = f"{self.name}.jobs"
        self.durable = f"{self.name}-consumer"

    async def fill(self, n: int, body: bytes) -> None:
        """Create the stream and publish ``n`` messages to its subject.

        Publishes without waiting for each acknowledgement (core NATS publishes, flushed every
        ``CHUNK``); returns once the stream holds ``n`` messages.
        """
        nc = await nats.connect(self.url)
        try:
            js = nc.jetstream()
            config = StreamConfig(
                name=self.name, subjects=[self.subject], storage=StorageType.MEMORY
            )
            await js.add_stream(config)
            for start in range(0, n, CHUNK):
                for _ in range(min(CHUNK, n - start)):
                    await nc.publish(self.subject, body)
                await nc.flush()
            deadline = time.perf_counter() + TIMEOUT
            while (held := (await js.stream_info(self.name)).state.messages) < n:
                if time.perf_counter() > deadline:
                    raise SystemExit(f"only {held} of {n} messages reached stream {self.name}")
                await asyncio.sleep(0.01)
            if held != n:
                raise SystemExit(f"{held} messages in stream {self.name}, expected {n}")
        finally:
            await nc.close()

    async def left(self) -> int:
        """Messages the consumer has not acknowledged: pending plus delivered but unacked.

        A missing consumer means nothing was consumed: every message is left.
        """
        nc = await nats.connect(self.url)
        try:
            js = nc.jetstream()
            try:
                info = await js.consumer_info(self.name, self.durable)
            except NotFoundError:
                return int((await js.stream_info(self.name)).state.messages)
            return int(info.num_pending or 0) + int(info.num_ack_pending or 0)
        finally:
            await nc.close()

    async def delete(self) -> None:
        """Delete the stream (and with it its consumers)."""
        nc = await nats.connect(self.url)
        try:
            await nc.jetstream().delete_stream(self.name)
        except NotFoundError:
            pass
        finally:
            await nc.close()
