"""The Redis Streams producer against the real server: demand, acks, reclaim, dead letters."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, cast

import pytest
from redis.asyncio import Redis

from underway.errors import ConfigError, DecodeError
from underway.pipelines import Message, Pipeline
from underway.pipelines.producers.redis_streams import RedisStreamProducer

from ._redis import URL, admin_fixture, stream_fixture  # noqa: F401 (fixtures)

pytestmark = pytest.mark.redis

GIVEN_BACK_IDLE_MS = 10**9
HANG_BOUND = 30.0  # how long a task may take to end once told to: only a hang takes that


async def until(
    condition: Callable[[], Any], timeout: float = 10.0, *, message: str = "condition"
) -> None:
    """Wait until ``condition()`` (or the awaitable it returns) is true.

    ``timeout`` only catches a hang: a healthy run needs a fraction of it.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} not reached within {timeout:g}s")
        await asyncio.sleep(0.01)


async def end(task: asyncio.Task[Any], what: str, *, cancel: bool = True) -> None:
    """Cancel ``task`` (or let it end by itself) and wait for it; an error in it is raised.

    A no-op for a task already awaited. The bound catches a task that goes on: redis-py
    can lose a cancellation that arrives mid-command (seen with 8.2 on a busy machine).
    """
    if cancel:
        task.cancel()
    done, _ = await asyncio.wait({task}, timeout=HANG_BOUND)
    if not done:
        task.cancel()
        pytest.fail(f"{what} still running {HANG_BOUND:g}s after being ended", pytrace=False)
    if not task.cancelled():
        task.result()


def decoded(value: object) -> str:
    """A reply field as text (the clients here keep replies as bytes)."""
    return cast(bytes, value).decode()


async def fill(admin: Redis, stream: str, rows: list[dict[str, Any]]) -> list[str]:
    """Append ``rows`` to ``stream``; returns their ids in order."""
    ids: list[str] = []
    for start in range(0, len(rows), 1000):
        pipe = admin.pipeline(transaction=False)
        for row in rows[start : start + 1000]:
            pipe.xadd(stream, cast("dict[Any, Any]", row))
        ids += [i.decode() for i in await pipe.execute()]
    return ids


async def pending(admin: Redis, stream: str, group: str = "g") -> list[dict[str, Any]]:
    """The group's pending entries (id, consumer, idle, deliveries)."""
    rows = await admin.xpending_range(stream, group, "-", "+", 100_000)
    return [
        {
            "id": decoded(r["message_id"]),
            "consumer": decoded(r["consumer"]),
            "idle": r["time_since_delivered"],
            "deliveries": r["times_delivered"],
        }
        for r in rows
    ]


async def pending_count(admin: Redis, stream: str, group: str = "g") -> int:
    return int((await admin.xpending(stream, group))["pending"])


async def nothing_pending(admin: Redis, stream: str) -> bool:
    return await pending_count(admin, stream) == 0


async def dead_entries(admin: Redis, stream: str) -> list[dict[bytes, bytes]]:
    entries = await admin.xrange(f"{stream}:dead")
    return [fields for _id, fields in cast("list[tuple[bytes, dict[bytes, bytes]]]", entries)]


def key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


# -- configuration -------------------------------------------------------------------


def test_invalid_options_are_rejected_with_precise_messages() -> None:
    with pytest.raises(ConfigError, match="stream must be a non-empty string"):
        RedisStreamProducer("", "g")
    with pytest.raises(ConfigError, match=r"url must start with redis://"):
        RedisStreamProducer("s", "g", url="http://localhost")
    with pytest.raises(ConfigError, match="invalid url"):
        RedisStreamProducer("s", "g", url="redis://localhost:port/0")
    with pytest.raises(ConfigError, match="block must be a number > 0, got 0"):
        RedisStreamProducer("s", "g", block=0)
    with pytest.raises(ConfigError, match="max_deliveries must be an int >= 1 or None"):
        RedisStreamProducer("s", "g", max_deliveries=0)
    with pytest.raises(ConfigError, match="on_failure must be one of"):
        RedisStreamProducer("s", "g", on_failure="requeue")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="needs a dead-letter stream"):
        RedisStreamProducer("s", "g", dead_letter_stream=False, on_failure="dead_letter")
    with pytest.raises(ConfigError, match="must differ from stream"):
        RedisStreamProducer("s", "g", dead_letter_stream="s")
    producer = RedisStreamProducer("s", "g")
    assert producer.dead_letter_stream == "s:dead"
    assert producer.consumer.startswith(socket.gethostname())


async def test_unreachable_server_fails_start_with_the_url() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"redis://:secret@127.0.0.1:{port}/0"
    pipeline = Pipeline(producer=RedisStreamProducer("s", "g", url=url), handle_message=lambda m: m)
    async with asyncio.timeout(15):
        with pytest.raises(ConnectionError, match=rf"127\.0\.0\.1:{port}") as info:
            await pipeline.start()
    assert "secret" not in str(info.value)
    assert not pipeline.running


async def test_missing_group_without_create_group_fails_start(admin: Redis, stream: str) -> None:
    producer = RedisStreamProducer(stream, "g", url=URL, create_group=False)
    with pytest.raises(ConfigError, match="does not exist"):
        await producer.prepare_for_start(10)
    assert await admin.exists(stream) == 0


# -- flow ----------------------------------------------------------------------------


async def test_back_pressure_bounds_in_flight_and_pending(admin: Redis, stream: str) -> None:
    ids = await fill(admin, stream, [{"i": i} for i in range(2000)])
    gate = asyncio.Event()
    inside = peak_inside = 0
    handled: list[str] = []

    async def handle(message: Message) -> None:
        nonlocal inside, peak_inside
        inside += 1
        peak_inside = max(peak_inside, inside)
        await gate.wait()
        await asyncio.sleep(0.0005)
        handled.append(message.metadata["id"])
        inside -= 1

    producer = RedisStreamProducer(stream, "g", url=URL, block=0.2)
    pipeline = Pipeline(
        producer=producer,
        handle_message=handle,
        processors={"concurrency": 2, "max_demand": 5, "min_demand": 2},
    )
    samples: list[tuple[int, int, int]] = []
    sampling = True

    async def sample() -> None:
        while sampling:  # ends by itself: a cancel mid-command could be lost (see end())
            info = (await admin.xinfo_groups(stream))[0]
            samples.append(
                (pipeline.in_flight, await pending_count(admin, stream), info["entries-read"])
            )
            await asyncio.sleep(0.005)

    async with pipeline:
        await until(lambda: inside == 2 and pipeline.in_flight == 10)
        await asyncio.sleep(0.2)
        assert await pending_count(admin, stream) == 10
        assert (await admin.xinfo_groups(stream))[0]["entries-read"] == 10  # no more read
        sampler = asyncio.create_task(sample())
        try:
            gate.set()
            await until(lambda: len(handled) == 2000, timeout=20)
        finally:
            sampling = False
            await end(sampler, "the sampler", cancel=False)
        await until(lambda: nothing_pending(admin, stream))
    busy = [s for s in samples if s[2] < 2000]  # the stream still held unread entries
    assert len(busy) >= 5
    assert max(s[0] for s in samples) <= 10
    assert max(s[1] for s in samples) <= 10
    assert peak_inside <= 2
    assert sorted(handled, key=key) == ids


async def test_order_per_partition_key(admin: Redis, stream: str) -> None:
    rng = random.Random(3)
    keys = [f"k{rng.randrange(8)}" for _ in range(1000)]
    seq: Counter[str] = Counter()
    rows = []
    for k in keys:
        rows.append({"key": k, "seq": seq[k]})
        seq[k] += 1
    await fill(admin, stream, rows)
    seen: dict[str, list[int]] = {}

    async def handle(message: Message) -> None:
        await asyncio.sleep(rng.choice((0, 0, 0.001)))
        seen.setdefault(message.data["key"], []).append(int(message.data["seq"]))

    pipeline = Pipeline(
        producer=RedisStreamProducer(stream, "g", url=URL, block=0.2),
        handle_message=handle,
        processors={
            "concurrency": 4,
            "max_demand": 10,
            "partition_by": lambda m: m.data["key"],
        },
    )
    async with pipeline:
        await until(lambda: sum(map(len, seen.values())) == 1000)
    assert seen == {k: list(range(n)) for k, n in seq.items()}
    assert await pending_count(admin, stream) == 0


async def test_random_failures_settle_every_entry_exactly_once(admin: Redis, stream: str) -> None:
    rng = random.Random(11)
    fate = [rng.choices(("ok", "dead", "retry"), (90, 3, 7))[0] for _ in range(10_000)]
    ids = await fill(admin, stream, [{"i": i} for i in range(len(fate))])
    succeeded: Counter[str] = Counter()
    deliveries_on_success: dict[str, int] = {}

    def handle(message: Message) -> None:
        i = int(message.data["i"])
        if fate[i] == "dead":
            message.configure_ack(on_failure="dead_letter")
            raise ValueError(f"bad entry {i}")
        if fate[i] == "retry" and message.metadata["deliveries"] == 1:
            raise RuntimeError("try again")
        succeeded[message.metadata["id"]] += 1
        deliveries_on_success[message.metadata["id"]] = message.metadata["deliveries"]

    producer = RedisStreamProducer(stream, "g", url=URL, block=0.2, claim_idle=0.2)
    pipeline = Pipeline(
        producer=producer,
        handle_message=handle,
        processors={"concurrency": 8, "max_demand": 50},
    )
    expected_dead = {ids[i] for i, f in enumerate(fate) if f == "dead"}
    async with pipeline:
        await until(lambda: len(succeeded) == len(ids) - len(expected_dead), timeout=30)
        await until(lambda: nothing_pending(admin, stream))
    dead = await dead_entries(admin, stream)
    dead_ids = Counter(d[b"underway.origin_id"].decode() for d in dead)
    assert set(dead_ids) == expected_dead
    assert set(dead_ids.values()) == {1}
    assert all(b"ValueError: bad entry" in d[b"underway.reason"] for d in dead)
    assert set(succeeded) == set(ids) - expected_dead
    assert set(succeeded.values()) == {1}
    retried = {ids[i] for i, f in enumerate(fate) if f == "retry"}
    assert {deliveries_on_success[i] for i in retried} == {2}
    assert {deliveries_on_success[i] for i in set(succeeded) - retried} == {1}
    assert producer.held == 0


async def test_max_deliveries_moves_a_failing_message_to_the_dead_stream(
    admin: Redis, stream: str
) -> None:
    await admin.xgroup_create(stream, "g", "0", mkstream=True)
    [crashing] = await fill(admin, stream, [{"name": "crashes-its-consumer"}])
    # Another consumer took it three times and died each time: its count is at the limit.
    await admin.xreadgroup("g", "ghost", {stream: ">"}, count=1)
    await admin.xclaim(stream, "g", "ghost", 0, [crashing], idle=GIVEN_BACK_IDLE_MS, retrycount=3)
    [failing] = await fill(admin, stream, [{"name": "always-fails"}])
    seen: list[tuple[str, int]] = []

    def handle(message: Message) -> None:
        seen.append((message.data["name"], message.metadata["deliveries"]))
        raise ValueError("nope")

    pipeline = Pipeline(
        producer=RedisStreamProducer(
            stream, "g", url=URL, block=0.1, claim_idle=0.1, max_deliveries=3
        ),
        handle_message=handle,
    )
    async with pipeline:
        await until(lambda: admin.xlen(f"{stream}:dead"), timeout=10)
        await until(lambda: nothing_pending(admin, stream))
        await until(lambda: len(seen) == 3)
    assert seen == [("always-fails", 1), ("always-fails", 2), ("always-fails", 3)]
    dead = {d[b"underway.origin_id"].decode(): d for d in await dead_entries(admin, stream)}
    assert set(dead) == {crashing, failing}
    assert dead[failing][b"underway.deliveries"] == b"3"
    assert dead[failing][b"underway.reason"] == b"failed on delivery 3 of 3: ValueError: nope"
    assert dead[failing][b"name"] == b"always-fails"
    assert dead[crashing][b"underway.deliveries"] == b"3"
    assert dead[crashing][b"underway.reason"] == b"delivered 3 times, max_deliveries is 3"
    assert dead[crashing][b"underway.group"] == b"g"


async def test_without_dead_letter_stream_exhausted_messages_are_dropped_and_logged(
    admin: Redis, stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    await fill(admin, stream, [{"n": 1}])
    calls = 0

    def handle(message: Message) -> None:
        nonlocal calls
        calls += 1
        raise ValueError("nope")

    producer = RedisStreamProducer(
        stream, "g", url=URL, block=0.1, claim_idle=0.1, max_deliveries=2, dead_letter_stream=False
    )
    with caplog.at_level(logging.WARNING, logger="underway.pipelines.redis"):
        async with Pipeline(producer=producer, handle_message=handle):
            await until(lambda: calls == 2 and producer.held == 0)
            await until(lambda: nothing_pending(admin, stream))
    assert "dropped (no dead-letter stream)" in caplog.text
    assert await admin.exists(f"{stream}:dead") == 0


async def test_dead_consumers_entries_are_reclaimed(admin: Redis, stream: str) -> None:
    await admin.xgroup_create(stream, "g", "0", mkstream=True)
    ids = await fill(admin, stream, [{"i": i} for i in range(50)])
    # Taken before the read, so that the server's delivery time is no earlier: a slow
    # reply to this read cannot make the entries look claimed too soon.
    ghost_read_at = time.monotonic()
    await admin.xreadgroup("g", "ghost", {stream: ">"}, count=20)  # then it died
    first_seen: dict[str, tuple[float, int]] = {}

    def handle(message: Message) -> None:
        first_seen.setdefault(message.metadata["id"], (time.monotonic(), 0))
        first_seen[message.metadata["id"]] = (
            first_seen[message.metadata["id"]][0],
            message.metadata["deliveries"],
        )

    pipeline = Pipeline(
        producer=RedisStreamProducer(stream, "g", url=URL, block=0.1, claim_idle=0.3),
        handle_message=handle,
    )
    async with pipeline:
        await until(lambda: len(first_seen) == 50)
        await until(lambda: nothing_pending(admin, stream))
    ghost = ids[:20]
    assert {first_seen[i][1] for i in ghost} == {2}
    assert {first_seen[i][1] for i in ids[20:]} == {1}
    # Claimed not before claim_idle (0.3 s, less a margin for the server's millisecond
    # clock): a lower bound, which a slow machine only makes easier to meet.
    assert min(first_seen[i][0] for i in ghost) >= ghost_read_at + 0.2
    consumers = {c["name"].decode(): c for c in await admin.xinfo_consumers(stream, "g")}
    assert consumers["ghost"]["pending"] == 0


async def test_a_message_held_past_claim_idle_is_not_handed_out_twice(
    admin: Redis, stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    ids = await fill(admin, stream, [{"slow": "yes"}, {"slow": "no"}])
    calls: Counter[str] = Counter()
    release = asyncio.Event()

    async def handle(message: Message) -> None:
        calls[message.metadata["id"]] += 1
        if message.data["slow"] == "yes":
            await release.wait()  # held until the producer's own scan has claimed it

    producer = RedisStreamProducer(stream, "g", url=URL, block=0.05, claim_idle=0.2)
    pipeline = Pipeline(
        producer=producer, handle_message=handle, processors={"concurrency": 2, "max_demand": 1}
    )

    async def claim_undone() -> bool:
        return [(r["id"], r["deliveries"]) for r in await pending(admin, stream)] == [(ids[0], 1)]

    with caplog.at_level(logging.WARNING, logger="underway.pipelines.redis"):
        async with pipeline:
            await until(lambda: len(calls) == 2)
            await until(lambda: "held for longer than claim_idle" in caplog.text)
            await until(claim_undone)  # XAUTOCLAIM counted a delivery; the producer undid it
            release.set()
            await until(lambda: producer.held == 0)
            await until(lambda: nothing_pending(admin, stream))
    assert calls == {ids[0]: 1, ids[1]: 1}


async def test_decode_failures_are_settled_per_on_failure(
    admin: Redis, stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    rows: list[dict[str, Any]] = [{"body": json.dumps({"n": i})} for i in range(40)]
    rows[3] = {"body": "{not json"}
    rows[17] = {"other": "no body field"}
    rows[20] = {"body": json.dumps({"n": 20, "settle": "ack"})}
    rows[21] = {"body": json.dumps({"n": 21, "settle": "bogus"})}
    ids = await fill(admin, stream, rows)
    handled: list[int] = []
    failed: dict[str, Any] = {}

    def handle(message: Message) -> None:
        data = message.data
        if "settle" in data:
            message.configure_ack(on_failure=data["settle"])
            raise ValueError(f"refused {data['n']}")
        handled.append(data["n"])

    def handle_failed(messages: list[Message]) -> None:
        failed.update({m.metadata["id"]: m.reason for m in messages})

    producer = RedisStreamProducer(
        stream,
        "g",
        url=URL,
        block=0.1,
        decoder=lambda fields: json.loads(fields[b"body"]),
        on_failure="dead_letter",
    )
    pipeline = Pipeline(producer=producer, handle_message=handle, handle_failed=handle_failed)
    with caplog.at_level(logging.ERROR, logger="underway.pipelines.redis"):
        async with pipeline:
            await until(lambda: len(handled) + len(failed) == 40)
            await until(lambda: nothing_pending(admin, stream))
    assert sorted(handled) == [i for i in range(40) if i not in (3, 17, 20, 21)]
    assert isinstance(failed[ids[3]], DecodeError)
    assert isinstance(failed[ids[17]], DecodeError)
    assert "KeyError" in str(failed[ids[17]])
    dead = {d[b"underway.origin_id"].decode(): d for d in await dead_entries(admin, stream)}
    assert set(dead) == {ids[3], ids[17], ids[21]}  # ids[20] asked to be acknowledged
    assert dead[ids[3]][b"body"] == b"{not json"
    assert dead[ids[17]][b"other"] == b"no body field"
    assert dead[ids[3]][b"underway.reason"].startswith(b"DecodeError: payload could not")
    assert isinstance(failed[ids[21]], ConfigError)  # configure_ack refused it
    assert "on_failure='bogus' is not one of" in str(failed[ids[21]])


# -- shutdown and cancellation ------------------------------------------------------


async def test_drain_acks_exactly_what_was_handled(admin: Redis, stream: str) -> None:
    ids = await fill(admin, stream, [{"i": i} for i in range(2000)])
    first: list[str] = []

    async def handle(message: Message) -> None:
        await asyncio.sleep(0.001)
        first.append(message.metadata["id"])

    pipeline = Pipeline(
        producer=RedisStreamProducer(stream, "g", url=URL, block=5.0),
        handle_message=handle,
        processors={"concurrency": 4, "max_demand": 10},
    )
    async with pipeline:
        await until(lambda: len(first) >= 300)
    rows = await pending(admin, stream)
    info = (await admin.xinfo_groups(stream))[0]
    last = key(info["last-delivered-id"].decode())
    unread = {i for i in ids if key(i) > last}
    left = {r["id"] for r in rows}
    acked = set(ids) - unread - left
    assert acked == set(first)
    assert len(first) == len(set(first)) < 2000
    assert left.isdisjoint(first)
    # whatever was read but not handed out was given back: reclaimable at once, uncounted
    assert all(r["deliveries"] == 0 and r["idle"] >= GIVEN_BACK_IDLE_MS for r in rows)

    second: list[str] = []
    # A claim_idle far past the bound below: only entries given back can be claimed in time.
    pipeline = Pipeline(
        producer=RedisStreamProducer(stream, "g", url=URL, block=0.2, claim_idle=600),
        handle_message=lambda m: second.append(m.metadata["id"]),
    )
    async with pipeline:
        await until(
            lambda: len(first) + len(second) == 2000,
            timeout=60,
            message="every entry handled, the given-back ones without waiting claim_idle",
        )
    assert sorted(first + second, key=key) == ids
    assert await pending_count(admin, stream) == 0


async def test_cancelled_fetch_gives_its_entries_back(admin: Redis, stream: str) -> None:
    producer = RedisStreamProducer(stream, "g", url=URL, block=20.0)
    await producer.prepare_for_start(10)
    fetching = asyncio.create_task(producer.fetch(10))
    name = f"underway:{producer.consumer}"

    async def blocked() -> bool:
        return any(c["name"] == name and "b" in c["flags"] for c in await admin.client_list())

    try:
        try:
            await until(blocked, message="the fetch blocked on the server")
        except BaseException:
            await end(fetching, "the fetch")
            raise
        fetching.cancel()  # while its XREADGROUP waits on the server
        with pytest.raises(asyncio.CancelledError):
            await fetching
        entry_id = decoded(await admin.xadd(stream, {"i": 0}))  # served to that read
    finally:
        await producer.close()
    rows = await pending(admin, stream)
    assert [r["id"] for r in rows] == [entry_id]
    assert rows[0]["deliveries"] == 0
    assert rows[0]["idle"] >= GIVEN_BACK_IDLE_MS

    other = RedisStreamProducer(stream, "g", url=URL, block=0.2, claim_idle=60)
    await other.prepare_for_start(10)
    try:
        async with asyncio.timeout(10):
            messages = await other.fetch(10)
    finally:
        await other.close()
    assert [(m.metadata["id"], m.metadata["deliveries"]) for m in messages] == [(entry_id, 1)]
    assert await nothing_pending(admin, stream) is False  # fetched, not acknowledged


async def test_draining_wakes_a_blocked_read(admin: Redis, stream: str) -> None:
    # A block far past the bound on stop(): only a woken read lets stop() return in time.
    producer = RedisStreamProducer(stream, "g", url=URL, block=300.0)
    pipeline = Pipeline(producer=producer, handle_message=lambda m: m)
    await pipeline.start()
    name = f"underway:{producer.consumer}"

    async def blocked() -> bool:
        return any(c["name"] == name and "b" in c["flags"] for c in await admin.client_list())

    try:
        await until(blocked, message="the read blocked on the server")
    finally:
        stopping = asyncio.timeout(60)  # only catches a hang: waking takes milliseconds
        try:
            async with stopping:
                await pipeline.stop()
        except TimeoutError:
            if not stopping.expired():
                raise
            pytest.fail("pipeline.stop() hung: the blocked read was not woken", pytrace=False)
    consumers = [c["name"].decode() for c in await admin.xinfo_consumers(stream, "g")]
    assert producer.consumer not in consumers  # an unused default consumer is removed


# -- connection trouble --------------------------------------------------------------


async def connection_ids(admin: Redis, producer: RedisStreamProducer) -> set[int]:
    """The server's ids of the producer's open connections (by its client name)."""
    name = f"underway:{producer.consumer}"
    return {int(c["id"]) for c in await admin.client_list() if c["name"] == name}


async def kill_connections(admin: Redis, producer: RedisStreamProducer) -> set[int]:
    """Close every connection of the producer on the server; returns their ids."""
    return {
        client_id
        for client_id in await connection_ids(admin, producer)
        if await admin.client_kill_filter(_id=str(client_id))
    }


async def test_dropped_connections_are_reopened(admin: Redis, stream: str) -> None:
    ids = await fill(admin, stream, [{"i": i} for i in range(1000)])
    handled: Counter[str] = Counter()

    async def handle(message: Message) -> None:
        await asyncio.sleep(0.001)
        handled[message.metadata["id"]] += 1

    producer = RedisStreamProducer(
        stream, "g", url=URL, block=0.2, claim_idle=0.5, reconnect_interval=0.05
    )
    pipeline = Pipeline(
        producer=producer, handle_message=handle, processors={"concurrency": 4, "max_demand": 10}
    )
    killed: set[int] = set()
    async with pipeline:
        for threshold in (200, 500):
            await until(lambda t=threshold: len(handled) >= t)  # type: ignore[misc]
            dropped = await kill_connections(admin, producer)
            assert dropped, "the producer had no connection to drop"
            killed |= dropped
            assert (await connection_ids(admin, producer)).isdisjoint(killed)
        await until(lambda: len(handled) == 1000, timeout=30)
        await until(lambda: nothing_pending(admin, stream))
        reopened = await connection_ids(admin, producer)
    assert set(handled) == set(ids)  # at least once: an entry whose reply was lost comes again
    assert reopened, "the producer works on new connections"
    assert reopened.isdisjoint(killed)


async def test_a_read_whose_connection_dies_is_sent_again_at_once(
    admin: Redis, stream: str
) -> None:
    # The first kill ends a command in flight: the client surfaces it (it never retries),
    # and the producer sends the read again on a new connection, without waiting the 60 s
    # reconnect_interval that an outage would take. The second kills idle connections,
    # which redis-py 8.2 replaces before use and earlier versions surface at the next
    # command: either way the acknowledgement must not wait either.
    producer = RedisStreamProducer(stream, "g", url=URL, block=30.0, reconnect_interval=60)
    await producer.prepare_for_start(10)
    fetching = asyncio.create_task(producer.fetch(10))
    name = f"underway:{producer.consumer}"

    async def blocked() -> bool:
        return any(c["name"] == name and "b" in c["flags"] for c in await admin.client_list())

    try:
        await until(blocked)
        killed = await kill_connections(admin, producer)
        [entry_id] = await fill(admin, stream, [{"n": "after the kill"}])
        async with asyncio.timeout(20):  # far below reconnect_interval: a hang is caught
            messages = await fetching
        assert [m.metadata["id"] for m in messages] == [entry_id]
        # Now kill the idle connections: the acknowledgement goes through a new one.
        killed |= await kill_connections(admin, producer)
        async with asyncio.timeout(20):
            await messages[0].ack_immediately()
        assert await nothing_pending(admin, stream)
        assert (await connection_ids(admin, producer)).isdisjoint(killed)
    finally:
        await end(fetching, "the fetch")
        await producer.close()


async def test_lost_group_is_created_again(
    admin: Redis, stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    handled: list[str] = []
    pipeline = Pipeline(
        producer=RedisStreamProducer(stream, "g", url=URL, block=0.1, reconnect_interval=0.05),
        handle_message=lambda m: handled.append(m.data["n"]),
    )
    with caplog.at_level(logging.WARNING, logger="underway.pipelines.redis"):
        async with pipeline:
            await fill(admin, stream, [{"n": "before"}])
            await until(lambda: handled == ["before"])
            await admin.xtrim(stream, maxlen=0)
            await admin.xgroup_destroy(stream, "g")
            await fill(admin, stream, [{"n": "after"}])
            await until(lambda: handled == ["before", "after"])
            await until(lambda: nothing_pending(admin, stream))
    assert "is missing on the server" in caplog.text


async def test_entries_abandoned_at_stop_are_delivered_again_after_a_restart(
    admin: Redis, stream: str
) -> None:
    [entry_id] = await fill(admin, stream, [{"n": "0"}])
    calls: Counter[str] = Counter()
    never = asyncio.Event()

    async def handle(message: Message) -> None:
        calls[message.metadata["id"]] += 1
        if calls[message.metadata["id"]] == 1:
            await never.wait()  # outlives the shutdown bound: abandoned, never acknowledged

    producer = RedisStreamProducer(stream, "g", url=URL, block=0.1, claim_idle=0.2)
    pipeline = Pipeline(producer=producer, handle_message=handle)
    await pipeline.start()
    try:
        await until(lambda: calls[entry_id] == 1)
    finally:
        await pipeline.stop(timeout=0.05)
    assert [r["id"] for r in await pending(admin, stream)] == [entry_id]
    await pipeline.start()
    try:
        await until(lambda: calls[entry_id] == 2, timeout=5)  # reclaimed after claim_idle
        await until(lambda: nothing_pending(admin, stream))
    finally:
        await pipeline.stop()


def test_configure_ack_refuses_what_the_producer_cannot_do() -> None:
    producer = RedisStreamProducer("s", "g", url=URL, dead_letter_stream=False)
    message = Message(data={}, acknowledger=producer._acks)
    with pytest.raises(ConfigError, match="has no dead-letter stream"):
        message.configure_ack(on_failure="dead_letter")
    with pytest.raises(ConfigError, match=r"unknown Redis Streams ack option\(s\) \['requeue'\]"):
        message.configure_ack(requeue=True)
    with pytest.raises(ConfigError, match="on_failure='later' is not one of"):
        message.configure_ack(on_failure="later")
    assert message.ack_options == {}  # nothing was changed
    assert message.configure_ack(on_failure="ack").ack_options == {"on_failure": "ack"}
