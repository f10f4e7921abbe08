"""The NATS acknowledger against a fake connection: what it sends, in which order."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("nats")  # the package imports its driver

from underway.pipelines import Message
from underway.pipelines.producers.nats._acks import NATSAcknowledger
from underway.pipelines.producers.nats._policy import FailurePolicy


class FakeMsg:
    """What the acknowledger reads of a delivered message."""

    def __init__(self, reply: str) -> None:
        self.reply = reply


class FakeClient:
    """Records what is sent; each publication lets other tasks run (a flushed buffer)."""

    is_closed = False

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    async def publish(self, subject: str, payload: bytes = b"") -> None:
        self.sent.append((subject, payload))
        await asyncio.sleep(0)

    async def request(self, subject: str, payload: bytes, timeout: float) -> None:
        self.sent.append((subject, payload))

    async def flush(self, timeout: float) -> None:
        return None


async def test_no_in_progress_signal_follows_the_settlement_of_its_message() -> None:
    acks = NATSAcknowledger(FailurePolicy(), "owner", lease_interval=60.0, timeout=1.0)
    client = FakeClient()
    acks.client = client  # type: ignore[assignment]
    first, second = Message(data=b"1", acknowledger=acks), Message(data=b"2", acknowledger=acks)
    acks.hold(first, FakeMsg("$JS.ACK.1"))  # type: ignore[arg-type]
    acks.hold(second, FakeMsg("$JS.ACK.2"))  # type: ignore[arg-type]
    signals = asyncio.create_task(acks.leases.extend_now())
    await asyncio.sleep(0)  # the first signal is under way
    await acks.ack([second], [])
    await signals
    sent: list[Any] = client.sent
    assert sent == [("$JS.ACK.1", b"+WPI"), ("$JS.ACK.2", b"+ACK")]
