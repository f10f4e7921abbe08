"""SQS pieces of ``bench.pipelines``' SQS row: fill a fresh queue, count what is left.

Imported as ``_sqscommon`` by the scripts that run by path with underway's interpreter;
needs ``aiobotocore``. The server is moto's (``tests.servers.start_moto``): any credentials
do, so the scripts set dummy ones when none are in the environment.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiobotocore.session import get_session

from _brokers import TIMEOUT, fresh_name, parser

__all__ = ["REGION", "Queue", "sqs_parser"]

REGION = "us-east-1"
SEND_CONCURRENCY = 4
VISIBILITY_TIMEOUT = 300


def sqs_parser() -> argparse.ArgumentParser:
    """The common options plus the endpoint and the number of concurrent receive loops."""
    p = parser()
    p.add_argument("--endpoint", required=True, help="http://host:port of the SQS server")
    p.add_argument("--receivers", type=int, default=4, help="concurrent receive loops")
    p.add_argument("--wait", type=int, default=20, help="WaitTimeSeconds of each receive")
    return p


def _credentials() -> None:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)


class Queue:
    """A fresh standard queue (visibility timeout 300 s) on the server at ``endpoint``."""

    def __init__(self, args: argparse.Namespace, system: str) -> None:
        _credentials()
        self.endpoint: str = args.endpoint
        self.name = fresh_name(args, system)
        self.url = ""

    @asynccontextmanager
    async def client(self) -> AsyncIterator[Any]:
        """An aiobotocore SQS client for the server."""
        session = get_session()
        async with session.create_client(
            "sqs", region_name=REGION, endpoint_url=self.endpoint
        ) as client:
            yield client

    async def fill(self, n: int, body: bytes) -> None:
        """Create the queue and send ``n`` messages in batches of 10, some batches at once.

        Returns once the queue counts ``n`` visible messages.
        """
        text = body.decode()
        async with self.client() as client:
            created = await client.create_queue(
                QueueName=self.name, Attributes={"VisibilityTimeout": str(VISIBILITY_TIMEOUT)}
            )
            self.url = created["QueueUrl"]
            gate = asyncio.Semaphore(SEND_CONCURRENCY)

            async def send(start: int) -> None:
                entries = [
                    {"Id": str(i), "MessageBody": text} for i in range(start, min(start + 10, n))
                ]
                async with gate:
                    sent = await client.send_message_batch(QueueUrl=self.url, Entries=entries)
                if sent.get("Failed"):
                    raise SystemExit(f"send_message_batch failed: {sent['Failed']}")

            async with asyncio.timeout(TIMEOUT):
                await asyncio.gather(*(send(start) for start in range(0, n, 10)))
            held = await self._count(client, "ApproximateNumberOfMessages")
            if held != n:
                raise SystemExit(f"{held} messages in queue {self.name}, expected {n}")

    async def _count(self, client: Any, *names: str) -> int:
        """The sum of the queue's attributes ``names`` (message counts)."""
        answer = await client.get_queue_attributes(QueueUrl=self.url, AttributeNames=list(names))
        return sum(int(answer["Attributes"][name]) for name in names)

    async def left(self) -> int:
        """Messages still in the queue, visible or in flight (0: every message was deleted)."""
        async with self.client() as client:
            return await self._count(
                client, "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"
            )

    async def delete(self) -> None:
        """Delete the queue."""
        if not self.url:
            return
        async with self.client() as client:
            await client.delete_queue(QueueUrl=self.url)
