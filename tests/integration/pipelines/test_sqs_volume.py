"""10,000 messages through the SQS producer, 5% failing, against moto (opt-in, slow).

Opt in with ``UNDERWAY_SQS_VOLUME=1``: ``.ci/run`` runs it after the suite.

moto is the bottleneck here: each message it sends or receives costs time in proportion to
the messages in the queue (it computes the queue's attributes over all its messages, three
times per received message). A bare receive-and-delete loop gets about 100 messages a
second from a queue of 100, about 4 from a queue of 1,000. So a feeder sends while the
pipeline consumes, ten at a time, never more than ``AHEAD`` messages ahead: the pipeline
then goes about as fast as the bare loop (over a hundred messages a second), about a
minute or two in all.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter

import pytest

from tests.servers import Server
from underway.pipelines import Message, Pipeline

from ..conftest import wait_until
from ._sqs import Admin, admin_fixture, endpoint, moto_fixture, producer  # noqa: F401 (fixtures)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(
        os.environ.get("UNDERWAY_SQS_VOLUME") != "1",
        reason="takes minutes on moto: opt in with UNDERWAY_SQS_VOLUME=1 (.ci/run does)",
    ),
]

TOTAL = 10_000
AHEAD = 30  # most messages sent and not yet handled (moto is faster with fewer)
BOUND = 800.0  # catches a hang only


def fails(n: int) -> bool:
    """5% of the messages fail (deterministically)."""
    return n % 20 == 0


async def test_ten_thousand_messages_each_settled_once(moto: Server, admin: Admin) -> None:
    """Failures: every other one deleted at once, the others made visible again at once
    (``retry_now``) and handled successfully on their second receive."""
    url = await admin.queue(VisibilityTimeout=60)
    handled: Counter[int] = Counter()
    dropped: set[int] = set()

    def handle(message: Message) -> Message:
        n = int(message.data)
        handled[n] += 1
        if fails(n) and message.metadata["receive_count"] == 1:
            if n % 40 == 0:
                dropped.add(n)
                return message.configure_ack(on_failure="delete").failed("dropped")
            return message.configure_ack(on_failure="retry_now").failed("once more")
        return message

    async def feed() -> None:
        sent = 0
        while sent < TOTAL:
            if sent - len(handled) >= AHEAD:
                await asyncio.sleep(0.02)
                continue
            batch = [str(n) for n in range(sent, min(TOTAL, sent + 10))]
            await admin.send(url, batch)
            sent += len(batch)

    retried = {n for n in range(TOTAL) if fails(n) and n % 40 != 0}
    sqs = producer(endpoint(moto), url)
    async with Pipeline(
        producer=sqs,
        handle_message=handle,
        processors={"concurrency": 4, "max_demand": 10},
        producer_concurrency=3,
        name="volume",
    ):
        feeder = asyncio.create_task(feed())
        try:
            await wait_until(lambda: sum(handled.values()) >= TOTAL + len(retried), BOUND)
        finally:
            feeder.cancel()
            await asyncio.gather(feeder, return_exceptions=True)
        await wait_until(lambda: sqs.held == 0, BOUND)
    assert set(handled) == set(range(TOTAL))
    assert dropped == {n for n in range(TOTAL) if n % 40 == 0}
    assert {n for n, c in handled.items() if c == 2} == retried
    assert {n for n, c in handled.items() if c == 1} == set(range(TOTAL)) - retried
    # Every message was deleted (successes once, after their one successful handling):
    # nothing is left in the queue, visible or in flight.
    assert await admin.counts(url) == (0, 0)
