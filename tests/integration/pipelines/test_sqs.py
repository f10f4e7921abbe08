"""The SQS producer against moto: deletes, failures, visibility, redrive, FIFO order, restarts."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests.servers import Server, ServerUnavailable, free_port, start_moto, unavailable
from underway.errors import ConfigError, DecodeError
from underway.pipelines import Message, Pipeline
from underway.pipelines.producers.sqs import SQSProducer

from ..conftest import wait_until
from ._killed import kill_and_restart
from ._sqs import (  # noqa: F401 (fixtures)
    CREDENTIALS,
    SESSION,
    Admin,
    admin_fixture,
    endpoint,
    moto_fixture,
    producer,
)

ROOT = Path(__file__).resolve().parents[3]
BOUND = 60.0  # catches a hang only: a healthy run needs a fraction of it


def body_number(message: Message) -> int:
    return int(message.data)


# -- configuration -------------------------------------------------------------------


def test_invalid_options_are_config_errors() -> None:
    url = "http://127.0.0.1:1/123456789012/q"
    with pytest.raises(ConfigError, match="queue_url must be an http"):
        SQSProducer("q")
    with pytest.raises(ConfigError, match="must name a queue"):
        SQSProducer("http://127.0.0.1:1/")
    with pytest.raises(ConfigError, match="cannot be honoured by SQS"):
        SQSProducer(url, on_failure="stop")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="wait_time_seconds must be an int from 0 to 20"):
        SQSProducer(url, wait_time_seconds=21)
    with pytest.raises(ConfigError, match="visibility_timeout must be an int from 1 to 43200"):
        SQSProducer(url, visibility_timeout=0)
    with pytest.raises(ConfigError, match="backoff must satisfy"):
        SQSProducer(url, backoff=(10, 50_000))
    with pytest.raises(ConfigError, match="go together"):
        SQSProducer(url, aws_access_key_id="k")
    region = SQSProducer("https://sqs.eu-west-3.amazonaws.com/1/q").region_name
    assert region == "eu-west-3"
    assert SQSProducer(url + ".fifo").fifo


def test_configure_ack_refuses_what_sqs_cannot_honour() -> None:
    acks = SQSProducer("http://127.0.0.1:1/1/q")._acks
    message = Message(data="x", acknowledger=acks)
    for options, match in (
        ({"on_failure": "stop"}, "cannot be honoured by SQS"),
        ({"on_failure": "requeue"}, "cannot be honoured by SQS"),
        ({"delay": 50_000}, "delay must be a number of seconds from 0 to 43200"),
        ({"on_failure": "delete", "delay": 5}, "delay goes with on_failure='backoff'"),
        ({"priority": 1}, "unknown SQS ack option"),
    ):
        with pytest.raises(ConfigError, match=match):
            message.configure_ack(**options)
    assert message.ack_options == {}
    message.configure_ack(on_failure="backoff", delay=30)
    assert message.ack_options == {"on_failure": "backoff", "delay": 30}


# -- start ---------------------------------------------------------------------------


async def test_missing_queue_is_a_config_error_naming_it(moto: Server) -> None:
    url = f"{endpoint(moto)}/123456789012/uw-missing-queue"
    pipeline = Pipeline(producer=producer(endpoint(moto), url), handle_message=lambda m: m)
    async with asyncio.timeout(BOUND):
        with pytest.raises(ConfigError, match="uw-missing-queue does not exist"):
            await pipeline.start()
    assert not pipeline.running


async def test_unreachable_endpoint_is_a_connection_error_within_the_bound() -> None:
    server = f"http://127.0.0.1:{free_port()}"
    sqs = producer(server, f"{server}/123456789012/q", connect_timeout=2.0)
    pipeline = Pipeline(producer=sqs, handle_message=lambda m: m)
    async with asyncio.timeout(BOUND):
        with pytest.raises(ConnectionError, match=r"127\.0\.0\.1"):
            await pipeline.start()


async def test_missing_credentials_are_a_config_error(
    moto: Server, admin: Admin, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = await admin.queue()
    for name in (
        *("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"),
        *("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"),
        *("AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"),
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    sqs = SQSProducer(url, endpoint_url=endpoint(moto), region_name="us-east-1")
    async with asyncio.timeout(BOUND):
        with pytest.raises(ConfigError, match="no usable AWS credentials"):
            await sqs.prepare_for_start(10)


# -- flow ----------------------------------------------------------------------------


async def test_successes_deleted_once_failures_retried_and_decode_errors_settled(
    moto: Server, admin: Admin
) -> None:
    """5% fail on their first receive (made visible at once) and succeed the second time."""
    url = await admin.queue(VisibilityTimeout=30)
    total = 120
    await admin.send(url, [*map(str, range(total)), "not a number"])
    handled: Counter[int] = Counter()
    failed: list[Message] = []

    def handle(message: Message) -> Message:
        n = message.data
        handled[n] += 1
        if n % 20 == 0 and message.metadata["receive_count"] == 1:
            return message.failed("deterministic failure")
        return message

    sqs = producer(endpoint(moto), url, decoder=int, on_failure="retry_now")
    pipeline = Pipeline(
        producer=sqs,
        handle_message=handle,
        handle_failed=failed.extend,
        processors={"concurrency": 4, "max_demand": 10},
        producer_concurrency=3,
    )
    async with pipeline:
        await wait_until(lambda: sum(handled.values()) >= total + total // 20, BOUND)
        await wait_until(lambda: len(failed) >= total // 20 + 1, BOUND)
    retried = {n for n in range(total) if n % 20 == 0}
    assert {n for n, c in handled.items() if c == 2} == retried
    assert {n for n, c in handled.items() if c == 1} == set(range(total)) - retried
    decode = [m for m in failed if isinstance(m.reason, DecodeError)]
    # Made visible again at once, it may have failed again before the pipeline stopped.
    assert decode
    assert {m.data for m in decode} == {"not a number"}
    assert sorted(m.data for m in failed if m not in decode) == sorted(retried)
    # The undecodable one was made visible again (retry_now); the rest were deleted.
    assert await admin.total(url) == 1


async def test_back_pressure_bounds_what_is_received(moto: Server, admin: Admin) -> None:
    url = await admin.queue(VisibilityTimeout=30)
    await admin.send(url, [str(i) for i in range(60)])
    gate = asyncio.Event()
    handled: list[int] = []

    async def handle(message: Message) -> Message:
        await gate.wait()
        handled.append(int(message.data))
        return message

    sqs = producer(endpoint(moto), url)
    pipeline = Pipeline(
        producer=sqs,
        handle_message=handle,
        processors={"concurrency": 2, "max_demand": 5},
        producer_concurrency=2,
    )
    async with pipeline:
        await wait_until(lambda: pipeline.in_flight == pipeline.capacity, BOUND)
        await asyncio.sleep(1.0)  # the fetch loops had time to ask for more: they do not
        visible, in_flight = await admin.counts(url)
        assert in_flight == sqs.held == pipeline.capacity == 10
        assert visible == 50
        gate.set()
        await wait_until(lambda: len(handled) == 60, BOUND)
    assert sorted(handled) == list(range(60))
    assert await admin.total(url) == 0


async def test_visibility_is_extended_for_a_slow_handler(moto: Server, admin: Admin) -> None:
    url = await admin.queue(VisibilityTimeout=2)
    await admin.send(url, ["slow-1", "slow-2"])
    handled: list[str] = []
    visible: list[int] = []

    async def handle(message: Message) -> Message:
        await asyncio.sleep(3.0)  # half as long again as the visibility timeout
        # The pipeline is full (capacity 2): nothing receives them, so without the
        # extension both would be visible again by now.
        visible.append((await admin.counts(url))[0])
        handled.append(message.data)
        return message

    sqs = producer(endpoint(moto), url, wait_time_seconds=0)
    async with Pipeline(
        producer=sqs, handle_message=handle, processors={"concurrency": 2, "max_demand": 1}
    ):
        await wait_until(lambda: len(handled) == 2, BOUND)
    assert visible == [0, 0]
    assert sorted(handled) == ["slow-1", "slow-2"]
    assert sqs.visibility == 2
    assert await admin.total(url) == 0  # deleted with a receipt handle still valid


async def test_left_failures_go_to_the_dead_letter_queue(moto: Server, admin: Admin) -> None:
    url, dlq = await admin.queue_with_dlq(2, VisibilityTimeout=1)
    await admin.send(url, ["poison", "fine"])
    seen: Counter[str] = Counter()

    def handle(message: Message) -> Message:
        seen[message.data] += 1
        return message.failed("poison") if message.data == "poison" else message

    # on_failure="leave": the redrive policy decides
    sqs = producer(endpoint(moto), url, wait_time_seconds=0)
    async with Pipeline(producer=sqs, handle_message=handle):
        await wait_until(lambda: admin.total(dlq), BOUND)
    assert seen == {"poison": 2, "fine": 1}
    assert await admin.counts(dlq) == (1, 0)
    assert await admin.total(url) == 0


async def test_failure_settings_per_message(moto: Server, admin: Admin) -> None:
    url = await admin.queue(VisibilityTimeout=30)
    await admin.send(url, ["delete", "backoff", "again"])
    seen: Counter[str] = Counter()

    def handle(message: Message) -> Message:
        seen[message.data] += 1
        if message.data == "delete":
            return message.configure_ack(on_failure="delete").failed("dropped")
        if message.data == "backoff":
            return message.configure_ack(delay=60).failed("later")
        if seen["again"] == 1:
            return message.configure_ack(on_failure="retry_now").failed("at once")
        return message

    sqs = producer(endpoint(moto), url, wait_time_seconds=0)
    async with Pipeline(producer=sqs, handle_message=handle):
        await wait_until(lambda: seen["again"] == 2, BOUND)
    assert await admin.counts(url) == (0, 1)  # "backoff" waits its 60 s, invisible
    assert seen == {"delete": 1, "backoff": 1, "again": 2}


async def test_fifo_groups_keep_their_order(moto: Server, admin: Admin) -> None:
    """One receive at a time: moto serves concurrent receives of one group (real SQS does not)."""
    url = await admin.queue(f"uw-{os.getpid()}-order.fifo", VisibilityTimeout=30)
    count = 60
    groups = [f"g{i % 4}" for i in range(count)]
    await admin.send(url, [f"{groups[i]}:{i}" for i in range(count)], groups=groups)
    order: defaultdict[str, list[int]] = defaultdict(list)
    keys: set[Any] = set()

    async def handle(message: Message) -> Message:
        group, _, n = message.data.partition(":")
        keys.add(message.ordering_key)
        await asyncio.sleep(0.002 * (int(n) % 3))
        order[group].append(int(n))
        return message

    async with Pipeline(
        producer=producer(endpoint(moto), url, wait_time_seconds=0),
        handle_message=handle,
        processors={"concurrency": 4, "max_demand": 5},
    ):
        await wait_until(lambda: sum(map(len, order.values())) == count, BOUND)
    assert keys == {"g0", "g1", "g2", "g3"}
    for group, numbers in order.items():
        assert numbers == [i for i in range(count) if groups[i] == group]
    assert await admin.total(url) == 0


async def test_drain_on_stop_settles_what_was_received(moto: Server, admin: Admin) -> None:
    url = await admin.queue(VisibilityTimeout=30)
    await admin.send(url, [str(i) for i in range(60)])
    started = asyncio.Event()
    handled: list[int] = []

    async def handle(message: Message) -> Message:
        started.set()
        await asyncio.sleep(0.3)
        handled.append(int(message.data))
        return message

    sqs = producer(endpoint(moto), url)
    pipeline = Pipeline(
        producer=sqs, handle_message=handle, processors={"concurrency": 2, "max_demand": 5}
    )
    await pipeline.start()
    await asyncio.wait_for(started.wait(), BOUND)
    await pipeline.stop(BOUND)
    assert handled
    assert len(set(handled)) == len(handled)
    # Every handled message was deleted; nothing is left in flight (given back if unhandled).
    assert await admin.counts(url) == (60 - len(handled), 0)


async def test_receives_resume_after_the_endpoint_comes_back() -> None:
    try:
        server = start_moto()
    except ServerUnavailable as exc:
        unavailable("SQS (moto)", str(exc))
    try:
        base = endpoint(server)
        url = f"{base}/123456789012/uw-outage"
        handled: list[str] = []
        sqs = producer(base, url)

        async def create_and_send(body: str) -> None:
            async with SESSION.create_client(
                "sqs", region_name="us-east-1", endpoint_url=base, **CREDENTIALS
            ) as client:
                await client.create_queue(QueueName="uw-outage")
                await client.send_message(QueueUrl=url, MessageBody=body)

        await create_and_send("before")
        async with Pipeline(producer=sqs, handle_message=lambda m: handled.append(m.data)):
            await wait_until(lambda: handled == ["before"], BOUND)
            server.kill()
            await asyncio.sleep(1.0)  # receives fail meanwhile, retried with backoff
            server.start()  # a fresh moto: the queue is created again
            await create_and_send("after")
            await wait_until(lambda: handled == ["before", "after"], BOUND)
    finally:
        server.stop()


async def test_killed_consumer_loses_nothing(moto: Server, admin: Admin, tmp_path: Path) -> None:
    url = await admin.queue(VisibilityTimeout=2)
    bodies = [f"m{i}" for i in range(150)]
    await admin.send(url, bodies)
    config = {"endpoint": endpoint(moto), "queue_url": url, "visibility": 2, "wait": 0}
    before, after = await kill_and_restart(
        "_sqs",
        {**config, "handler_delay": 0.01},
        set(bodies),
        tmp_path / "out",
        kill_after=40,
        timeout=BOUND,
    )
    assert set(before) | set(after) == set(bodies)
    assert len(set(before)) == len(before)
    assert len(set(after)) == len(after)
    # Only messages the first life handled and had not deleted come again: at most its
    # capacity (40).
    assert len(before) + len(after) - len(bodies) <= 40
    assert await admin.total(url) == 0


def test_example_runs_against_the_server(moto: Server) -> None:
    env = {**os.environ, "UNDERWAY_SQS_ENDPOINT": endpoint(moto)}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "pipeline_sqs.py")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=BOUND,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "handled": 100,
        "deleted": 97,
        "dead_lettered": 3,
        "left": 0,
    }
