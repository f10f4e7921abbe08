"""PubSubProducer against a scripted client: pull order, leases racing settlements, releases.

The client stands in for ``SubscriberAsyncClient``: each pull takes the next messages of
the subscription in the order the pulls reach it, and answers after a delay the test
chooses, so two concurrent pulls can answer in the opposite order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

pytest.importorskip("google.pubsub_v1")

from google.pubsub_v1 import PubsubMessage, PullResponse, ReceivedMessage, Subscription

from underway.pipelines.producers.pubsub import PubSubProducer, _producer

SUBSCRIPTION = "projects/p/subscriptions/orders"


class Transport:
    def __init__(self) -> None:
        self.closed = False

    async def close(self) -> None:
        self.closed = True


class ScriptedClient:
    """A subscription of ``count`` messages (data ``b"0"``, ``b"1"``...; one ordering key).

    ``delays[i]`` is how long the i-th pull takes to answer. ``modify_gate``, when set,
    holds every ``modify_ack_deadline`` whose deadline is in ``gated`` until it is set.
    """

    def __init__(self, count: int, *, ordering: bool, delays: Sequence[float] = ()) -> None:
        self.ordering = ordering
        self.next = 0
        self.count = count
        self.delays = list(delays)
        self.pulls = 0
        self.pulling = 0
        self.most_pulling = 0
        self.events: list[tuple[str, int | None, tuple[str, ...]]] = []
        self.modify_gate: asyncio.Event | None = None
        self.gated: set[int] = set()
        self.pull_answer: asyncio.Future[None] | None = None
        self.transport = Transport()

    async def get_subscription(self, **_: Any) -> Subscription:
        return Subscription(
            name=SUBSCRIPTION,
            topic="projects/p/topics/orders",
            ack_deadline_seconds=10,
            enable_message_ordering=self.ordering,
        )

    async def pull(self, *, max_messages: int, **_: Any) -> PullResponse:
        index = self.pulls
        self.pulls += 1
        taken = range(self.next, min(self.count, self.next + max_messages))
        self.next = taken.stop
        self.pulling += 1
        self.most_pulling = max(self.most_pulling, self.pulling)
        try:
            if self.pull_answer is not None:
                await asyncio.shield(self.pull_answer)
            else:
                await asyncio.sleep(self.delays[index] if index < len(self.delays) else 0)
        finally:
            self.pulling -= 1
        return PullResponse(
            received_messages=[
                ReceivedMessage(
                    ack_id=f"ack-{n}",
                    message=PubsubMessage(
                        data=str(n).encode(), message_id=str(n), ordering_key="k"
                    ),
                )
                for n in taken
            ]
        )

    async def acknowledge(self, *, ack_ids: Sequence[str], **_: Any) -> None:
        self.events.append(("ack", None, tuple(ack_ids)))

    async def modify_ack_deadline(
        self, *, ack_ids: Sequence[str], ack_deadline_seconds: int, **_: Any
    ) -> None:
        self.events.append(("modify", ack_deadline_seconds, tuple(ack_ids)))
        if self.modify_gate is not None and ack_deadline_seconds in self.gated:
            await self.modify_gate.wait()
        self.events.append(("modified", ack_deadline_seconds, tuple(ack_ids)))


@pytest.fixture(name="scripted")
def scripted_fixture(monkeypatch: pytest.MonkeyPatch) -> list[ScriptedClient]:
    """Producers started in the test get the last client appended to the list."""
    clients: list[ScriptedClient] = []
    monkeypatch.setattr(_producer, "open_client", lambda *args: clients[-1])
    return clients


async def started(clients: list[ScriptedClient], client: ScriptedClient) -> PubSubProducer:
    clients.append(client)
    producer = PubSubProducer(SUBSCRIPTION, emulator_host="127.0.0.1:1")
    await producer.prepare_for_start(100)
    return producer


async def test_an_ordered_subscription_hands_out_pulls_in_the_order_they_were_served(
    scripted: list[ScriptedClient],
) -> None:
    """Two concurrent fetches: the first pull answers last. Messages of one ordering key
    must still reach the pipeline in the subscription's order."""
    client = ScriptedClient(4, ordering=True, delays=[0.2, 0.0])
    producer = await started(scripted, client)
    handed: list[bytes] = []

    async def fetch() -> None:
        handed.extend(m.data for m in await producer.fetch(2))

    try:
        async with asyncio.timeout(10):
            await asyncio.gather(fetch(), fetch())
    finally:
        await producer.close()
    assert handed == [b"0", b"1", b"2", b"3"]


async def test_an_unordered_subscription_pulls_concurrently(
    scripted: list[ScriptedClient],
) -> None:
    client = ScriptedClient(4, ordering=False, delays=[0.2, 0.2])
    producer = await started(scripted, client)
    try:
        async with asyncio.timeout(10):
            batches = await asyncio.gather(producer.fetch(2), producer.fetch(2))
    finally:
        await producer.close()
    assert client.most_pulling == 2
    assert sorted(m.data for batch in batches for m in batch) == [b"0", b"1", b"2", b"3"]


async def test_a_settlement_waits_for_the_lease_extension_under_way(
    scripted: list[ScriptedClient],
) -> None:
    """A nack sent while an extension of the same message is in flight could reach the
    service first, and the extension would then undo it: the nack waits for it."""
    client = ScriptedClient(2, ordering=False)
    producer = await started(scripted, client)
    try:
        async with asyncio.timeout(10):
            first, second = await producer.fetch(2)
            client.modify_gate = asyncio.Event()
            client.gated = {10}
            extending = asyncio.create_task(producer._keeper.extend_now())
            await wait_for(lambda: ("modify", 10, ("ack-0", "ack-1")) in client.events)
            settling = asyncio.create_task(producer._acks.ack([second], [first.failed("x")]))
            for _ in range(20):
                await asyncio.sleep(0)
            assert client.events == [("modify", 10, ("ack-0", "ack-1"))]
            client.modify_gate.set()
            await asyncio.gather(extending, settling)
            # Settled: no extension touches them any more.
            await producer._keeper.extend_now()
    finally:
        await producer.close()
    assert client.events == [
        ("modify", 10, ("ack-0", "ack-1")),
        ("modified", 10, ("ack-0", "ack-1")),
        ("ack", None, ("ack-1",)),
        ("modify", 0, ("ack-0",)),
        ("modified", 0, ("ack-0",)),
    ]


async def test_an_extension_skips_what_was_settled_since_it_began(
    scripted: list[ScriptedClient],
) -> None:
    """Extensions go in chunks; one settled during an earlier chunk is not extended."""
    client = ScriptedClient(4, ordering=False)
    producer = await started(scripted, client)
    producer._acks.chunk = 2
    try:
        async with asyncio.timeout(10):
            messages = await producer.fetch(4)
            client.modify_gate = asyncio.Event()
            client.gated = {10}
            extending = asyncio.create_task(producer._keeper.extend_now())
            await wait_for(lambda: ("modify", 10, ("ack-0", "ack-1")) in client.events)
            settling = asyncio.create_task(producer._acks.ack([messages[3]], []))
            for _ in range(20):
                await asyncio.sleep(0)
            client.modify_gate.set()
            await asyncio.gather(extending, settling)
    finally:
        await producer.close()
    extended = [ids for kind, seconds, ids in client.events if kind == "modify" and seconds == 10]
    assert extended == [("ack-0", "ack-1"), ("ack-2",)]


async def test_messages_of_a_pull_whose_fetch_was_cancelled_are_released(
    scripted: list[ScriptedClient],
) -> None:
    client = ScriptedClient(3, ordering=False)
    producer = await started(scripted, client)
    client.pull_answer = asyncio.get_running_loop().create_future()
    try:
        async with asyncio.timeout(10):
            fetching = asyncio.create_task(producer.fetch(3))
            await wait_for(lambda: client.pulling == 1)
            fetching.cancel()
            with pytest.raises(asyncio.CancelledError):
                await fetching
            client.pull_answer.set_result(None)
            await wait_for(lambda: ("modified", 0, ("ack-0", "ack-1", "ack-2")) in client.events)
        assert producer.held == 0
    finally:
        await producer.close()
    assert client.transport.closed


async def wait_for(condition: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)
