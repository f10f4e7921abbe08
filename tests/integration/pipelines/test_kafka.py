"""The Kafka producer against a real broker (Tansu): counts, commits, dead letters, order.

The example runs in a process of its own while the other tests run (joining its group
takes the broker seconds); :func:`test_example_runs` checks what it printed.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import Server, free_port
from underway.errors import ConfigError, DecodeError
from underway.pipelines import Message, Pipeline
from underway.pipelines.producers.kafka import KafkaProducer

from ..conftest import wait_until
from ._kafka import (
    HEARTBEAT_MS,
    SESSION_MS,
    committed,
    create_topics,
    end_offsets,
    fresh,
    kafka_fixture,  # noqa: F401 (fixture)
    produce,
    read_all,
)

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(name="example", scope="module", autouse=True)
def example_fixture(
    kafka: Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """``examples/pipeline_kafka.py`` started against the broker, and the file of its
    output (stdout then stderr); killed if still running, and reaped, after the module."""
    out = tmp_path_factory.mktemp("example") / "output"
    with out.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "examples" / "pipeline_kafka.py")],
            cwd=ROOT,
            env={"UNDERWAY_KAFKA": kafka.address, "PATH": "/usr/bin:/bin"},
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process, out
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def producer(kafka: Server, topic: str, group: str, **options: Any) -> KafkaProducer:
    """A producer with short commit and group timings."""
    options.setdefault("commit_interval", 0.2)
    return KafkaProducer(
        topic,
        group,
        bootstrap_servers=kafka.address,
        session_timeout_ms=SESSION_MS,
        heartbeat_interval_ms=HEARTBEAT_MS,
        **options,
    )


async def test_ten_thousand_with_failures_dead_lettered(kafka: Server) -> None:
    topic, group, partitions = fresh(), fresh("g"), 4
    await create_topics(kafka.address, {topic: partitions, f"{topic}.dead": 1})
    total = 10_000
    await produce(kafka.address, topic, [str(i).encode() for i in range(total)], partitions)
    handled: list[int] = []

    async def handle(message: Message) -> Message:
        index = int(message.data)
        handled.append(index)
        if index % 20 == 0:
            return message.failed(f"index {index} fails")
        return message

    pipeline = Pipeline(
        producer=producer(kafka, topic, group, on_failure="dead_letter"),
        handle_message=handle,
        processors={"concurrency": 8, "max_demand": 100},
    )
    async with pipeline:
        await wait_until(lambda: len(handled) >= total, timeout=60, message="all handled")
    assert sorted(handled) == list(range(total))
    ends = await end_offsets(kafka.address, topic, partitions)
    assert sum(ends.values()) == total
    assert await committed(kafka.address, group, topic, partitions) == ends
    dead = await read_all(kafka.address, f"{topic}.dead", 1)
    assert sorted(int(r.value) for r in dead) == list(range(0, total, 20))
    headers = dict(dead[0].headers)
    assert headers["underway.origin_topic"] == topic.encode()
    assert int(headers["underway.origin_partition"]) == int(dead[0].value) % partitions
    assert int(headers["underway.origin_offset"]) == int(dead[0].value) // partitions
    assert b"fails" in headers["underway.reason"]


async def test_no_commit_past_a_message_in_flight(kafka: Server) -> None:
    topic, group = fresh(), fresh("g")
    await create_topics(kafka.address, {topic: 1})
    await produce(kafka.address, topic, [str(i).encode() for i in range(20)], 1)
    release = asyncio.Event()
    done: set[int] = set()

    async def handle(message: Message) -> Message:
        if int(message.data) == 5:
            await release.wait()
        done.add(int(message.data))
        return message

    kafka_producer = producer(kafka, topic, group, on_failure="ack")
    pipeline = Pipeline(
        producer=kafka_producer,
        handle_message=handle,
        # Message 5 alone on one processor, held there while the later ones finish.
        processors={
            "concurrency": 2,
            "max_demand": 5,
            "partition_by": lambda m: 0 if int(m.data) == 5 else 1,
        },
    )
    async with pipeline:
        await wait_until(lambda: len(done) == 19, timeout=30, message="all but one handled")
        await wait_until(lambda: kafka_producer.in_flight == 1, timeout=30)

        async def at_gap() -> bool:
            return await committed(kafka.address, group, topic, 1) == {0: 5}

        await wait_until(at_gap, timeout=30, message="commit at the gap")
        await asyncio.sleep(1.0)  # several commit intervals: the commit stays at the gap
        assert await committed(kafka.address, group, topic, 1) == {0: 5}
        release.set()

        async def all_committed() -> bool:
            return await committed(kafka.address, group, topic, 1) == {0: 20}

        await wait_until(all_committed, timeout=30, message="everything committed")


async def test_slow_handler_is_bounded_by_capacity(kafka: Server) -> None:
    topic, group, partitions = fresh(), fresh("g"), 3
    await create_topics(kafka.address, {topic: partitions})
    total = 600
    values = [str(i).encode() for i in range(total)]
    await produce(kafka.address, topic, values, partitions, batch_bytes=512)
    fetch_bytes = 2048
    kafka_producer = producer(
        kafka, topic, group, on_failure="ack", max_partition_fetch_bytes=fetch_bytes
    )
    handled: list[int] = []
    samples: list[tuple[int, int, int]] = []

    async def handle(message: Message) -> Message:
        await asyncio.sleep(0.01)
        handled.append(int(message.data))
        samples.append(
            (pipeline.in_flight, kafka_producer.in_flight, kafka_producer.buffered_bytes)
        )
        return message

    pipeline = Pipeline(
        producer=kafka_producer,
        handle_message=handle,
        processors={"concurrency": 2, "max_demand": 4},
    )
    async with pipeline:
        await wait_until(lambda: len(handled) >= 60, timeout=30, message="some handled")
        ends = await end_offsets(kafka.address, topic, partitions)
        done = await committed(kafka.address, group, topic, partitions)
        assert sum(max(0, c) for c in done.values()) < sum(ends.values())  # more to come
    assert samples
    assert max(s[0] for s in samples) <= pipeline.capacity
    assert max(s[1] for s in samples) <= pipeline.capacity
    # aiokafka holds one fetch per partition: max_partition_fetch_bytes, which the broker
    # may pass by a record batch (512 bytes here); the topic holds far more (~40 kB).
    assert 0 < max(s[2] for s in samples) <= partitions * 2 * fetch_bytes


async def test_partition_order_with_concurrent_processors(kafka: Server) -> None:
    topic, group, partitions = fresh(), fresh("g"), 4
    await create_topics(kafka.address, {topic: partitions})
    total = 400
    await produce(kafka.address, topic, [str(i).encode() for i in range(total)], partitions)
    seen: dict[int, list[int]] = defaultdict(list)
    count = 0

    async def handle(message: Message) -> Message:
        nonlocal count
        index = int(message.data)
        await asyncio.sleep(0.001 * (index % 3))
        seen[message.metadata["partition"]].append(message.metadata["offset"])
        count += 1
        return message

    pipeline = Pipeline(
        producer=producer(kafka, topic, group, on_failure="ack"),
        handle_message=handle,
        processors={"concurrency": 4, "max_demand": 10},
    )
    async with pipeline:
        await wait_until(lambda: count >= total, timeout=30, message="all handled")
    assert set(seen) == set(range(partitions))
    for offsets in seen.values():
        assert offsets == list(range(total // partitions))


async def test_stop_policy_holds_the_partition(kafka: Server) -> None:
    topic, group = fresh(), fresh("g")
    await create_topics(kafka.address, {topic: 2})
    await produce(kafka.address, topic, [str(i).encode() for i in range(40)], 2)
    handled: set[int] = set()

    async def handle(message: Message) -> Message:
        handled.add(int(message.data))
        if int(message.data) == 10:  # partition 0, offset 5
            message.configure_ack(on_failure="stop")
            return message.failed("poison")
        return message

    pipeline = Pipeline(
        producer=producer(kafka, topic, group, on_failure="ack"),
        handle_message=handle,
        processors={"concurrency": 2, "max_demand": 5},
    )
    async with pipeline:
        await wait_until(lambda: set(range(1, 40, 2)) <= handled, timeout=30)

        async def settled() -> bool:
            return await committed(kafka.address, group, topic, 2) == {0: 5, 1: 20}

        await wait_until(settled, timeout=30, message="partition 1 committed, 0 held at 5")
    assert await committed(kafka.address, group, topic, 2) == {0: 5, 1: 20}


async def test_undecodable_payload_is_dead_lettered(kafka: Server) -> None:
    topic, group = fresh(), fresh("g")
    dead_topic = fresh("dead")
    await create_topics(kafka.address, {topic: 1, dead_topic: 1})
    await produce(kafka.address, topic, [b'{"n": 1}', b"not json", b'{"n": 3}'], 1)
    handled: list[Any] = []
    failed: list[Message] = []

    def handle_failed(messages: list[Message]) -> None:
        failed.extend(messages)

    def handle(message: Message) -> Message:
        handled.append(message.data)
        return message

    pipeline = Pipeline(
        producer=producer(kafka, topic, group, decoder=json.loads, dead_letter_topic=dead_topic),
        handle_message=handle,
        handle_failed=handle_failed,
    )
    async with pipeline:
        await wait_until(lambda: len(handled) == 2 and len(failed) == 1, timeout=30)

        async def all_committed() -> bool:
            return await committed(kafka.address, group, topic, 1) == {0: 3}

        await wait_until(all_committed, timeout=30)
    assert handled == [{"n": 1}, {"n": 3}]
    assert isinstance(failed[0].reason, DecodeError)
    dead = await read_all(kafka.address, dead_topic, 1)
    assert [r.value for r in dead] == [b"not json"]


async def test_drain_commits_everything_handled(kafka: Server) -> None:
    topic, group = fresh(), fresh("g")
    await create_topics(kafka.address, {topic: 2})
    await produce(kafka.address, topic, [str(i).encode() for i in range(400)], 2)
    handled: list[Message] = []

    async def handle(message: Message) -> Message:
        await asyncio.sleep(0.02)
        handled.append(message)
        return message

    pipeline = Pipeline(
        producer=producer(kafka, topic, group, on_failure="ack", commit_interval=60.0),
        handle_message=handle,
        processors={"concurrency": 4, "max_demand": 5},
    )
    await pipeline.start()
    await wait_until(lambda: len(handled) >= 20, timeout=30)
    await pipeline.stop()
    expected = dict.fromkeys(range(2), -1)  # -1: nothing committed
    for message in handled:
        p = message.metadata["partition"]
        expected[p] = max(expected[p], message.metadata["offset"] + 1)
    assert len(handled) < 400
    assert await committed(kafka.address, group, topic, 2) == expected


async def test_unknown_topic_fails_start(kafka: Server) -> None:
    topic = fresh("missing")
    pipeline = Pipeline(
        producer=producer(kafka, topic, fresh("g"), on_failure="ack"), handle_message=lambda m: m
    )
    with pytest.raises(ConfigError, match=topic):
        await pipeline.start()


async def test_missing_dead_letter_topic_fails_start(kafka: Server) -> None:
    topic = fresh()
    await create_topics(kafka.address, {topic: 1})
    pipeline = Pipeline(producer=producer(kafka, topic, fresh("g")), handle_message=lambda m: m)
    with pytest.raises(ConfigError, match=rf"{topic}\.dead"):
        await pipeline.start()


async def test_dead_letter_per_message_needs_the_topic(kafka: Server) -> None:
    """Without the dead-letter topic at start, ``on_failure="dead_letter"`` is refused at
    ``configure_ack`` (a broker that does not create topics would never take one)."""
    topic = fresh()
    await create_topics(kafka.address, {topic: 1})
    kafka_producer = producer(kafka, topic, fresh("g"), on_failure="ack")
    await kafka_producer.prepare_for_start(10)
    try:
        message = Message(data=b"x", acknowledger=kafka_producer._acks)
        with pytest.raises(ConfigError, match=rf"{topic}\.dead"):
            message.configure_ack(on_failure="dead_letter")
        assert message.configure_ack(on_failure="stop").ack_options == {"on_failure": "stop"}
    finally:
        await kafka_producer.close()


async def test_unreachable_broker_fails_start() -> None:
    port = free_port()
    pipeline = Pipeline(
        producer=KafkaProducer("t", "g", bootstrap_servers=f"127.0.0.1:{port}", connect_timeout=3),
        handle_message=lambda m: m,
    )
    async with asyncio.timeout(30):
        with pytest.raises(ConnectionError, match=rf"127\.0\.0\.1:{port}"):
            await pipeline.start()


def test_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="on_failure"):
        KafkaProducer("t", "g", on_failure="requeue")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="dead-letter"):
        KafkaProducer("t", "g", on_failure="dead_letter", dead_letter_topic=False)
    with pytest.raises(ConfigError, match="group_id"):
        KafkaProducer("t", "")
    with pytest.raises(ConfigError, match="consumer_options"):
        KafkaProducer("t", "g", consumer_options={"enable_auto_commit": True})
    with pytest.raises(ConfigError, match="commit_interval"):
        KafkaProducer("t", "g", commit_interval=2.0, max_poll_interval_ms=3_000)
    KafkaProducer("t", "g", commit_interval=1.5, max_poll_interval_ms=3_000)
    acks = KafkaProducer("t", "g", on_failure="ack", dead_letter_topic=False)._acks
    message = Message(data=b"x", acknowledger=acks)
    with pytest.raises(ConfigError, match="retry"):
        message.configure_ack(on_failure="retry")
    with pytest.raises(ConfigError, match="dead-letter"):
        message.configure_ack(on_failure="dead_letter")
    with pytest.raises(ConfigError, match="unknown"):
        message.configure_ack(requeue=True)
    assert message.configure_ack(on_failure="stop").ack_options == {"on_failure": "stop"}


async def test_example_runs(example: tuple[subprocess.Popen[bytes], Path]) -> None:
    process, out = example
    try:
        code = await asyncio.to_thread(process.wait, 60)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"the example did not finish within 60 s:\n{out.read_text()}"
        ) from None
    output = out.read_text()
    assert code == 0, output
    assert "handled 100, dead-lettered 5, committed 100" in output.splitlines()
