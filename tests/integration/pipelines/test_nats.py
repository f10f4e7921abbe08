"""The NATS JetStream producer against a real server: acks, failures, demand, order, drain."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import socket
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.client import JetStreamContext

from underway.errors import ConfigError, DecodeError
from underway.pipelines import Message, Pipeline
from underway.pipelines.producers.nats import NATSProducer
from underway.pipelines.producers.nats import _producer as nats_producer

from ..conftest import wait_until
from ._nats import (  # noqa: F401 (fixtures)
    URL,
    AckLog,
    Stream,
    js_fixture,
    nc_fixture,
    publish,
    stream_fixture,
)

pytestmark = pytest.mark.nats


async def consumer_state(js: JetStreamContext, stream: str, durable: str = "d") -> dict[str, int]:
    info = await js.consumer_info(stream, durable)
    return {
        "ack_pending": info.num_ack_pending or 0,
        "pending": info.num_pending or 0,
        "redelivered": info.num_redelivered or 0,
        "ack_floor": info.ack_floor.stream_seq if info.ack_floor else 0,
    }


async def drained(js: JetStreamContext, stream: str) -> bool:
    state = await consumer_state(js, stream)
    return state["ack_pending"] == 0 and state["pending"] == 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# -- start ---------------------------------------------------------------------------


async def test_unreachable_server_fails_start_within_connect_timeout() -> None:
    port = free_port()
    url = f"nats://user:secret@127.0.0.1:{port}"
    producer = NATSProducer("s", "d", servers=url, connect_timeout=1.0)
    pipeline = Pipeline(producer=producer, handle_message=lambda m: m)
    async with asyncio.timeout(20):
        with pytest.raises(ConnectionError, match=rf"127\.0\.0\.1:{port} within 1s") as info:
            await pipeline.start()
    assert "secret" not in str(info.value)
    assert not pipeline.running


async def test_missing_stream_is_a_config_error_naming_it() -> None:
    producer = NATSProducer("uwtest_no_such_stream", "d", servers=URL)
    with pytest.raises(ConfigError, match="'uwtest_no_such_stream' does not exist"):
        await producer.prepare_for_start(10)


async def test_missing_consumer_without_create_consumer(stream: Stream) -> None:
    producer = NATSProducer(stream.name, "d", servers=URL, create_consumer=False)
    with pytest.raises(ConfigError, match=r"consumer 'd' of stream '\w+' does not exist"):
        await producer.prepare_for_start(10)


async def test_an_existing_consumer_is_bound_or_its_mismatch_named(
    js: JetStreamContext, stream: Stream
) -> None:
    config = ConsumerConfig(
        durable_name="d", ack_policy=AckPolicy.EXPLICIT, ack_wait=7.0, max_deliver=3
    )
    await js.add_consumer(stream.name, config=config)
    producer = NATSProducer(stream.name, "d", servers=URL, ack_wait=30.0, max_deliveries=5)
    with pytest.raises(ConfigError, match=r"ack_wait is 7\.0, the producer needs 30\.0") as info:
        await producer.prepare_for_start(10)
    assert "max_deliver is 3" in str(info.value)
    await publish(js, stream.subject(), [b"bound"])
    handled: list[bytes] = []
    matching = NATSProducer(stream.name, "d", servers=URL, ack_wait=7.0, max_deliveries=2)
    async with Pipeline(producer=matching, handle_message=lambda m: handled.append(m.data)):
        await wait_until(lambda: handled == [b"bound"], 20)
        await wait_until(lambda: drained(js, stream.name), 20)


async def test_a_consumer_that_limits_pulls_or_strips_payloads_is_a_config_error(
    nc: Client, js: JetStreamContext, stream: Stream
) -> None:
    # Settings nats-py cannot set: created through the JetStream API.
    config = {
        "durable_name": "d",
        "ack_policy": "explicit",
        "ack_wait": 30_000_000_000,
        "max_batch": 10,
        "max_expires": 1_000_000_000,
        "headers_only": True,
    }
    request = json.dumps({"stream_name": stream.name, "config": config}).encode()
    reply = await nc.request(f"$JS.API.CONSUMER.DURABLE.CREATE.{stream.name}.d", request)
    assert "error" not in json.loads(reply.data)
    producer = NATSProducer(stream.name, "d", servers=URL, batch=100, fetch_timeout=5.0)
    with pytest.raises(ConfigError, match=r"max_batch is 10") as info:
        await producer.prepare_for_start(10)
    assert "max_expires is 1s" in str(info.value)
    assert "headers_only" in str(info.value)


async def test_a_consumer_whose_ack_pending_limit_is_below_capacity_is_named_at_start(
    nc: Client, js: JetStreamContext, stream: Stream, caplog: pytest.LogCaptureFixture
) -> None:
    await js.add_consumer(
        stream.name,
        config=ConsumerConfig(
            durable_name="small",
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=30,
            max_deliver=-1,
            max_ack_pending=20,
        ),
    )

    async def warnings_at(capacity: int) -> list[str]:
        caplog.clear()
        producer = NATSProducer(stream.name, "small", servers=URL, ack_wait=30.0)
        with caplog.at_level(logging.WARNING, logger="underway.pipelines.nats"):
            await producer.prepare_for_start(capacity)
            await producer.close()
        return [r.getMessage() for r in caplog.records if "max_ack_pending" in r.getMessage()]

    assert await warnings_at(20) == []  # within the limit: nothing said
    [warning] = await warnings_at(50)
    assert "max_ack_pending is 20, below the pipeline's capacity of 50" in warning


# -- acknowledgements and failures ---------------------------------------------------


async def test_ten_thousand_messages_each_success_acked_once_failures_retried(
    nc: Client, js: JetStreamContext, stream: Stream
) -> None:
    total = 10_000
    failing = {i for i in range(total) if i % 20 == 7}  # 5%, on their first delivery
    seqs = await publish(js, stream.subject(), [str(i).encode() for i in range(total)])
    acks = AckLog()
    await acks.watch(nc, stream.name)
    succeeded: Counter[int] = Counter()
    attempts: Counter[int] = Counter()

    def handle(message: Message) -> Message:
        i = int(message.data)
        attempts[i] += 1
        if i in failing and message.metadata["num_delivered"] == 1:
            return message.failed("deterministic failure")
        succeeded[i] += 1
        return message

    producer = NATSProducer(stream.name, "d", servers=URL, backoff=(0.01, 0.1), batch=200)
    pipeline = Pipeline(
        producer=producer, handle_message=handle, processors={"concurrency": 4, "max_demand": 100}
    )
    async with pipeline:
        await wait_until(lambda: acks.count >= total + len(failing), 60)
        await wait_until(lambda: drained(js, stream.name), 20)
    assert set(succeeded) == set(range(total))
    assert set(succeeded.values()) == {1}
    assert {i for i, n in attempts.items() if n == 2} == failing
    assert set(attempts.values()) <= {1, 2}
    # At the broker: one +ACK per success; a -NAK then a +ACK per failure; nothing else.
    by_id = {i: acks.kinds(seq) for i, seq in enumerate(seqs)}
    assert {i for i, kinds in by_id.items() if kinds == ["-NAK", "+ACK"]} == failing
    # Each nak asked for the backoff of a first delivery: base * 2 ** 0.
    assert {acks.nak_delays(seqs[i])[0] for i in failing} == {0.01}
    assert {i for i, kinds in by_id.items() if kinds == ["+ACK"]} == set(range(total)) - failing
    state = await consumer_state(js, stream.name)
    assert state["ack_pending"] == 0
    assert state["pending"] == 0
    assert state["ack_floor"] == seqs[-1]


async def test_term_dead_letter_and_ack_per_producer_and_per_message(
    nc: Client, js: JetStreamContext, stream: Stream
) -> None:
    payloads = [str(i).encode() for i in range(200)]
    seqs = await publish(js, stream.subject("orders"), payloads)
    acks = AckLog()
    await acks.watch(nc, stream.name)

    def handle(message: Message) -> Message:
        i = int(message.data)
        if i % 10 == 3:
            return message.failed(f"bad order {i}")  # the producer's on_failure
        if i % 10 == 5:
            return message.configure_ack(on_failure="term").failed("terminated")
        if i % 10 == 7:
            return message.configure_ack(on_failure="ack").failed("dropped")
        return message

    producer = NATSProducer(
        stream.name,
        "d",
        servers=URL,
        subject=stream.subject("orders"),
        on_failure="dead_letter",
        dead_letter_subject=stream.dead_subject,
    )
    async with Pipeline(producer=producer, handle_message=handle):
        await wait_until(lambda: acks.count >= 200, 20)
        await wait_until(lambda: drained(js, stream.name), 20)
    kinds = {int(payloads[n]): acks.kinds(seq) for n, seq in enumerate(seqs)}
    assert {i for i, k in kinds.items() if k == ["+TERM"]} == {
        i for i in range(200) if i % 10 in (3, 5)
    }
    assert {i for i, k in kinds.items() if k == ["+ACK"]} == {
        i for i in range(200) if i % 10 not in (3, 5)
    }
    dead = await read_all(js, stream.dead_subject)
    assert sorted(int(m.data) for m in dead) == [i for i in range(200) if i % 10 == 3]
    headers = dead[0].headers or {}
    assert headers["Underway-Origin-Stream"] == stream.name
    assert headers["Underway-Origin-Subject"] == stream.subject("orders")
    assert headers["Underway-Origin-Sequence"] == str(seqs[3])
    assert headers["Underway-Origin-Consumer"] == "d"
    assert headers["Underway-Deliveries"] == "1"
    assert headers["Underway-Reason"] == "bad order 3"
    assert (await consumer_state(js, stream.name))["redelivered"] == 0


async def read_all(js: JetStreamContext, subject: str) -> list[Msg]:
    """Every message of ``subject`` (an ordered consumer of the test)."""
    sub = await js.subscribe(subject, ordered_consumer=True)
    messages: list[Msg] = []
    try:
        while True:
            try:
                messages.append(await sub.next_msg(timeout=1.0))
            except TimeoutError:
                return messages
    finally:
        await sub.unsubscribe()


async def test_retries_up_to_max_deliveries_then_dead_letters(
    nc: Client, js: JetStreamContext, stream: Stream
) -> None:
    [poison, _] = await publish(js, stream.subject(), [b"poison", b"fine"])
    acks = AckLog()
    await acks.watch(nc, stream.name)
    deliveries: list[tuple[bytes, int]] = []

    def handle(message: Message) -> Message:
        deliveries.append((message.data, message.metadata["num_delivered"]))
        return message.failed("poison") if message.data == b"poison" else message

    producer = NATSProducer(
        stream.name,
        "d",
        servers=URL,
        max_deliveries=3,
        backoff=(0.01, 0.05),
        dead_letter_subject=stream.dead_subject,
    )
    async with Pipeline(producer=producer, handle_message=handle):
        await wait_until(lambda: len(deliveries) == 4, 20)
        await wait_until(lambda: drained(js, stream.name), 20)
    assert sorted(deliveries) == [(b"fine", 1), (b"poison", 1), (b"poison", 2), (b"poison", 3)]
    # Retried with the backoff of each delivery (base 0.01 doubled), then terminated.
    await wait_until(lambda: acks.kinds(poison) == ["-NAK", "-NAK", "+TERM"], 20)
    assert acks.nak_delays(poison) == [0.01, 0.02]
    [dead] = await read_all(js, stream.dead_subject)
    assert dead.data == b"poison"
    assert (dead.headers or {})["Underway-Deliveries"] == "3"
    assert "failed on delivery 3 of 3" in (dead.headers or {})["Underway-Reason"]


async def test_undecodable_payload_fails_with_decode_error_and_is_settled(
    js: JetStreamContext, stream: Stream
) -> None:
    await publish(js, stream.subject(), [b"{not json", json.dumps({"n": 1}).encode()])
    handled: list[Any] = []
    failed: list[Message] = []
    producer = NATSProducer(stream.name, "d", servers=URL, decoder=json.loads, on_failure="term")
    pipeline = Pipeline(
        producer=producer,
        handle_message=lambda m: handled.append(m.data),
        handle_failed=failed.extend,
    )
    async with pipeline:
        await wait_until(lambda: handled and failed, 20)
        await wait_until(lambda: drained(js, stream.name), 20)
    assert handled == [{"n": 1}]
    [bad] = failed
    assert isinstance(bad.reason, DecodeError)
    assert bad.data == b"{not json"
    assert (await consumer_state(js, stream.name))["redelivered"] == 0


def test_unsupported_ack_options_are_config_errors() -> None:
    producer = NATSProducer("s", "d", servers=URL)
    message = Message(data=b"", acknowledger=producer._acks)
    with pytest.raises(ConfigError, match="unknown NATS ack option"):
        message.configure_ack(on_failure="retry", requeue=True)
    with pytest.raises(ConfigError, match="'reject' is not one of"):
        message.configure_ack(on_failure="reject")
    with pytest.raises(ConfigError, match="no dead_letter_subject"):
        message.configure_ack(on_failure="dead_letter")
    with pytest.raises(ConfigError, match="delay must be a number"):
        message.configure_ack(delay=-1)
    assert message.configure_ack(on_failure="term", delay=2).ack_options == {
        "on_failure": "term",
        "delay": 2,
    }


# -- demand, order, leases, drain ----------------------------------------------------


async def test_back_pressure_bounds_in_flight_and_ack_pending(
    js: JetStreamContext, stream: Stream
) -> None:
    await publish(js, stream.subject(), [str(i).encode() for i in range(1000)])
    gate = asyncio.Event()
    handled: list[bytes] = []

    async def handle(message: Message) -> None:
        await gate.wait()
        handled.append(message.data)

    producer = NATSProducer(stream.name, "d", servers=URL, batch=50, fetch_timeout=1.0)
    pipeline = Pipeline(
        producer=producer,
        handle_message=handle,
        processors={"concurrency": 2, "max_demand": 5, "min_demand": 2},
    )
    capacity = pipeline.capacity
    samples: list[tuple[int, int]] = []
    async with pipeline:
        # Full, or one short: a fetch may return before the last message of its pull
        # arrived (that one waits in the producer, pending at the server), and then a
        # processor holding max_demand - 1 asks for no more (min_demand is 2).
        await wait_until(lambda: pipeline.in_flight >= capacity - 1, 20)
        await asyncio.sleep(0.3)  # time to pull more, if anything would
        state = await consumer_state(js, stream.name)
        assert capacity - 1 <= pipeline.in_flight <= capacity
        assert pipeline.in_flight <= state["ack_pending"] <= capacity
        assert state["pending"] == 1000 - state["ack_pending"]
        gate.set()
        while len(handled) < 1000:
            state = await consumer_state(js, stream.name)
            samples.append((pipeline.in_flight, state["ack_pending"]))
            await asyncio.sleep(0.01)
        await wait_until(lambda: drained(js, stream.name), 20)
    assert max(in_flight for in_flight, _ in samples) <= capacity
    assert max(pending for _, pending in samples) <= capacity
    assert sorted(handled) == sorted(str(i).encode() for i in range(1000))


async def test_per_key_order_with_concurrent_processors(
    js: JetStreamContext, stream: Stream
) -> None:
    keys, per_key = 8, 40
    rows = [(k, n) for n in range(per_key) for k in range(keys)]
    for k, n in rows:
        await js.publish(stream.subject(f"k{k}"), json.dumps({"k": k, "n": n}).encode())
    seen: defaultdict[str, list[int]] = defaultdict(list)
    rng = random.Random(7)

    async def handle(message: Message) -> None:
        await asyncio.sleep(rng.random() * 0.004)
        seen[message.metadata["subject"]].append(message.data["n"])

    producer = NATSProducer(stream.name, "d", servers=URL, decoder=json.loads)
    pipeline = Pipeline(
        producer=producer,
        handle_message=handle,
        processors={
            "concurrency": 4,
            "max_demand": 10,
            "partition_by": lambda m: m.metadata["subject"],
        },
    )
    async with pipeline:
        await wait_until(lambda: sum(map(len, seen.values())) == len(rows), 30)
    assert seen == {stream.subject(f"k{k}"): list(range(per_key)) for k in range(keys)}


async def test_in_progress_keeps_a_slow_message_from_being_redelivered(
    js: JetStreamContext, stream: Stream
) -> None:
    await publish(js, stream.subject(), [b"slow"])
    handled: list[int] = []

    async def handle(message: Message) -> None:
        await asyncio.sleep(3.0)  # three times ack_wait
        handled.append(message.metadata["num_delivered"])

    producer = NATSProducer(stream.name, "d", servers=URL, ack_wait=1.0, fetch_timeout=0.5)
    async with Pipeline(producer=producer, handle_message=handle):
        await wait_until(lambda: handled, 20)
        await wait_until(lambda: drained(js, stream.name), 20)
        await asyncio.sleep(1.5)  # a redelivery, had there been one, would be handled now
    assert handled == [1]
    assert (await consumer_state(js, stream.name))["redelivered"] == 0


async def test_drain_on_stop_acks_in_flight_and_gives_back_the_rest(
    nc: Client, js: JetStreamContext, stream: Stream
) -> None:
    total = 100
    seqs = await publish(js, stream.subject(), [str(i).encode() for i in range(total)])
    acks = AckLog()
    await acks.watch(nc, stream.name)
    first: list[int] = []

    async def slow(message: Message) -> None:
        await asyncio.sleep(0.1)
        first.append(int(message.data))

    # ack_wait far above every wait here: only a message given back can come again.
    producer = NATSProducer(stream.name, "d", servers=URL, batch=20, ack_wait=120.0)
    pipeline = Pipeline(
        producer=producer, handle_message=slow, processors={"concurrency": 2, "max_demand": 5}
    )
    await pipeline.start()
    await wait_until(lambda: len(first) >= 10, 20)
    await pipeline.stop()
    handled_first = list(first)
    second: list[int] = []
    again = NATSProducer(stream.name, "d", servers=URL, ack_wait=120.0)
    async with Pipeline(producer=again, handle_message=lambda m: second.append(int(m.data))):
        await wait_until(lambda: len(handled_first) + len(second) >= total, 20)
        await wait_until(lambda: drained(js, stream.name), 20)
    assert not set(handled_first) & set(second)
    assert sorted(handled_first + second) == list(range(total))
    # At the broker: one +ACK each, after a -NAK for those pulled and given back at stop.
    await wait_until(lambda: all(acks.kinds(seq)[-1:] == ["+ACK"] for seq in seqs), 20)
    assert all(acks.kinds(seqs[i]) == ["+ACK"] for i in handled_first)
    assert all(acks.kinds(seqs[i]) in (["+ACK"], ["-NAK", "+ACK"]) for i in second)


async def test_messages_of_a_pull_under_way_at_stop_are_given_back(
    js: JetStreamContext, stream: Stream
) -> None:
    # ack_wait far above every wait here: a message not given back stays out of reach.
    producer = NATSProducer(stream.name, "d", servers=URL, ack_wait=120.0, fetch_timeout=5.0)
    await producer.prepare_for_start(10)
    try:
        fetching = asyncio.create_task(producer.fetch(10))
        await wait_until(lambda: num_waiting(js, stream.name), 20)  # the pull is at the server
        # Five of the ten asked for: the pull is still under way when the pipeline stops.
        await publish(js, stream.subject(), [str(i).encode() for i in range(5)])
        await producer.prepare_for_draining()
        fetching.cancel()
        await asyncio.gather(fetching, return_exceptions=True)
    finally:
        await producer.close()
    # Each was handed out (then nak'd at close, its handling cut short) or given back.
    sub = await js.pull_subscribe_bind(durable="d", stream=stream.name)
    again: set[bytes] = set()

    async def all_back() -> bool:
        with contextlib.suppress(TimeoutError):
            for msg in await sub.fetch(5, timeout=0.5):
                again.add(msg.data)
                await msg.ack()
        return len(again) == 5

    await wait_until(all_back, 30)
    await sub.unsubscribe()


async def num_waiting(js: JetStreamContext, stream: str) -> bool:
    return bool((await js.consumer_info(stream, "d")).num_waiting)


# -- the example ---------------------------------------------------------------------


async def test_the_example_runs_against_the_server() -> None:
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "UNDERWAY_NATS_URL": URL}
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(root / "examples" / "pipeline_nats.py")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "stored per region: {'ap': 327, 'eu': 328, 'us': 325}",
        "retried once, then stored: 10",
        "failed: {'DecodeError': 10, 'test orders are not stored': 10}",
        "dead-lettered: 20 left unacknowledged: 0 left to deliver: 0",
    ]


async def test_a_consumer_deleted_on_the_server_is_created_again(
    js: JetStreamContext, stream: Stream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nats_producer, "_CHECK_INTERVAL", 0.2)
    handled: list[bytes] = []
    producer = NATSProducer(stream.name, "d", servers=URL, fetch_timeout=0.2)
    async with Pipeline(producer=producer, handle_message=lambda m: handled.append(m.data)):
        await publish(js, stream.subject(), [b"before"])
        await wait_until(lambda: handled == [b"before"], 20)
        await wait_until(lambda: drained(js, stream.name), 20)
        await js.delete_consumer(stream.name, "d")
        await publish(js, stream.subject(), [b"after"])
        # A new consumer delivers the stream from its start again: at least once.
        await wait_until(lambda: handled[-1:] == [b"after"], 20)
        await wait_until(lambda: drained(js, stream.name), 20)
    assert handled in ([b"before", b"after"], [b"before", b"before", b"after"])
