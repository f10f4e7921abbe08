"""SQSProducer against a scripted client: extensions racing settlements, outages, give-backs.

The client stands in for an aiobotocore SQS client. It records every call when it starts
and when it ends, can hold visibility changes of a given number of seconds (``gate``) or
receives (``receive_gate``) until the test lets them go, and can fail every call as an
unreachable endpoint would (``down``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

import pytest

pytest.importorskip("aiobotocore")

from botocore.exceptions import EndpointConnectionError

from underway.pipelines.producers.sqs import SQSProducer

URL = "https://sqs.us-east-1.amazonaws.com/123456789012/orders"
BOUND = 30.0  # catches a hang only


class ScriptedSQS:
    """A standard queue of ``bodies``; message ``n`` has id ``m<n>``, receipts ``m<n>#<k>``."""

    def __init__(self, bodies: list[str], *, visibility: int = 30) -> None:
        self.visible: deque[tuple[str, str]] = deque(
            (f"m{n}", body) for n, body in enumerate(bodies)
        )
        self.visibility = visibility
        self.receive_count = 1
        self.receipts = 0
        self.events: list[tuple[str, Any, tuple[str, ...]]] = []
        self.gate: asyncio.Event | None = None
        self.gated: set[int] = set()
        self.receive_gate: asyncio.Event | None = None
        self.down = False
        self.failed_calls = 0

    async def __aenter__(self) -> ScriptedSQS:
        return self

    async def __aexit__(self, *_: object) -> None:
        return None

    def _check(self) -> None:
        if self.down:
            self.failed_calls += 1
            raise EndpointConnectionError(endpoint_url="https://sqs.example")

    async def get_queue_attributes(self, **_: Any) -> dict[str, Any]:
        self._check()
        return {"Attributes": {"VisibilityTimeout": str(self.visibility)}}

    async def receive_message(self, *, MaxNumberOfMessages: int, **_: Any) -> dict[str, Any]:
        self._check()
        records: list[dict[str, Any]] = []
        while self.visible and len(records) < MaxNumberOfMessages:
            message_id, body = self.visible.popleft()
            self.receipts += 1
            records.append(
                {
                    "MessageId": message_id,
                    "ReceiptHandle": f"{message_id}#{self.receipts}",
                    "Body": body,
                    "Attributes": {"ApproximateReceiveCount": str(self.receive_count)},
                }
            )
        if self.receive_gate is not None:
            await self.receive_gate.wait()
        else:
            await asyncio.sleep(0)
        return {"Messages": records}

    async def delete_message_batch(self, *, Entries: list[dict[str, Any]], **_: Any) -> Any:
        self._check()
        handles = tuple(entry["ReceiptHandle"] for entry in Entries)
        self.events.append(("delete", None, handles))
        await asyncio.sleep(0)
        return {"Successful": [{"Id": entry["Id"]} for entry in Entries]}

    async def change_message_visibility_batch(
        self, *, Entries: list[dict[str, Any]], **_: Any
    ) -> Any:
        self._check()
        seconds = Entries[0]["VisibilityTimeout"]
        handles = tuple(entry["ReceiptHandle"] for entry in Entries)
        self.events.append(("visibility", seconds, handles))
        try:
            if self.gate is not None and seconds in self.gated:
                await self.gate.wait()
            else:
                await asyncio.sleep(0)
        finally:
            self.events.append(("visibility over", seconds, handles))
        return {"Successful": [{"Id": entry["Id"]} for entry in Entries]}


def scripted(client: ScriptedSQS, **options: Any) -> SQSProducer:
    options.setdefault("wait_time_seconds", 0)
    options.setdefault("reconnect_interval", 0.01)
    options.setdefault("max_reconnect_interval", 0.05)
    sqs = SQSProducer(
        URL, aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1", **options
    )
    sqs._create_client = lambda: client  # type: ignore[method-assign]
    return sqs


async def until(predicate: Any) -> None:
    async with asyncio.timeout(BOUND):
        while not predicate():
            await asyncio.sleep(0.005)


@pytest.mark.parametrize(("options", "seconds"), [({"on_failure": "retry_now"}, 0), ({}, 60)])
async def test_a_visibility_change_waits_for_the_extension_naming_it(
    options: dict[str, Any], seconds: int
) -> None:
    """An extension answered after the settlement's change would undo it (30 s again)."""
    client = ScriptedSQS(["a"])
    sqs = scripted(client, **options)
    await sqs.prepare_for_start(10)
    try:
        [message] = await sqs.fetch(10)
        client.gate, client.gated = asyncio.Event(), {30}
        extension = asyncio.create_task(sqs._keeper.extend_now())
        await until(lambda: ("visibility", 30, ("m0#1",)) in client.events)
        if seconds:
            message.configure_ack(on_failure="backoff", delay=seconds)
        settle = asyncio.create_task(sqs._acks.ack([], [message.failed("no")]))
        await asyncio.sleep(0.05)
        assert ("visibility", seconds, ("m0#1",)) not in client.events
        client.gate.set()
        async with asyncio.timeout(BOUND):
            await asyncio.gather(extension, settle)
        assert client.events == [
            ("visibility", 30, ("m0#1",)),
            ("visibility over", 30, ("m0#1",)),
            ("visibility", seconds, ("m0#1",)),
            ("visibility over", seconds, ("m0#1",)),
        ]
    finally:
        await sqs.close()


async def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Receives and the extension of held messages fail alike: one line, not one each."""
    client = ScriptedSQS(["a"])
    sqs = scripted(client)
    await sqs.prepare_for_start(10)
    try:
        [message] = await sqs.fetch(10)
        with caplog.at_level(logging.INFO, logger="underway.pipelines"):
            client.down = True
            fetch = asyncio.create_task(sqs.fetch(10))
            await until(lambda: client.failed_calls >= 3)
            for _ in range(3):
                await sqs._keeper.extend_now()
            outage = [r for r in caplog.records if r.levelno >= logging.WARNING]
            client.down = False
            client.visible.append(("m1", "b"))
            async with asyncio.timeout(BOUND):
                [again] = await fetch
            await sqs._keeper.extend_now()
            await sqs._acks.ack([message, again], [])
        assert len(outage) == 1, [r.getMessage() for r in outage]
        assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 2
        assert client.events[-1] == ("delete", None, ("m0#1", "m1#2"))
    finally:
        await sqs.close()


async def test_a_held_message_a_cancelled_receive_returns_is_not_made_visible() -> None:
    """It is still being handled: its newest receipt handle is kept and used."""
    client = ScriptedSQS(["a"])
    sqs = scripted(client)
    await sqs.prepare_for_start(10)
    try:
        [message] = await sqs.fetch(10)
        client.visible.append(("m0", "a"))  # delivered again while held (SQS may)
        client.receive_gate = asyncio.Event()
        fetch = asyncio.create_task(sqs.fetch(10))
        await until(lambda: client.receipts == 2)
        fetch.cancel()
        await asyncio.gather(fetch, return_exceptions=True)
        client.receive_gate.set()
        await until(lambda: not sqs._receives)
        await asyncio.sleep(0.05)  # a give-back, if any, is sent by now
        assert not [e for e in client.events if e[0] == "visibility"]
        assert sqs._held == {"m0": "m0#2"}
        await sqs._acks.ack([message], [])
        assert client.events == [("delete", None, ("m0#2",))]
    finally:
        await sqs.close()


async def test_backoff_grows_with_the_approximate_receive_count() -> None:
    client = ScriptedSQS(["a", "b"])
    client.receive_count = 3
    sqs = scripted(client, on_failure="backoff", backoff=(10, 900))
    await sqs.prepare_for_start(10)
    try:
        first, second = await sqs.fetch(10)
        assert first.metadata["receive_count"] == 3
        second.configure_ack(delay=5)
        await sqs._acks.ack([], [first.failed("later"), second.failed("sooner")])
        assert sorted(e for e in client.events if e[0] == "visibility") == [
            ("visibility", 5, ("m1#2",)),
            ("visibility", 40, ("m0#1",)),  # 10 * 2 ** (3 - 1)
        ]
    finally:
        await sqs.close()


async def test_slow_extensions_while_receives_work_are_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Not an outage: receives answering in between do not log its end each time."""
    client = ScriptedSQS(["a"])
    sqs = scripted(client, visibility_timeout=2)  # extensions give up after a second
    await sqs.prepare_for_start(10)
    try:
        [message] = await sqs.fetch(10)
        client.gate, client.gated = asyncio.Event(), {2}
        with caplog.at_level(logging.INFO, logger="underway.pipelines"):
            for n in range(1, 3):
                await sqs._keeper.extend_now()
                client.visible.append((f"m{n}", "b"))
                assert len(await sqs.fetch(10)) == 1
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        assert message.metadata["message_id"] in sqs._held
    finally:
        await sqs.close()
