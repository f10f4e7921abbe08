"""The NATS producer across failures: a consumer killed and restarted, a server lost and back,
refused credentials. The server tests start a nats-server of their own (never the shared one).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.js.client import JetStreamContext
from nats.js.errors import NoStreamResponseError

from tests.servers import Server, ServerUnavailable, free_port, start_server, unavailable
from underway.errors import ConfigError
from underway.pipelines import Message, Pipeline
from underway.pipelines.producers.nats import NATSProducer

from ..conftest import wait_until
from ._killed import kill_and_restart
from ._nats import URL, AckLog, Stream, js_fixture, nc_fixture, publish, stream_fixture  # noqa: F401

pytestmark = pytest.mark.nats

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


def own_server(store: Path | None, *extra: str) -> Server:
    """A nats-server on a free port, with JetStream (file storage in ``store``) unless None."""
    port = free_port()
    jetstream = [] if store is None else ["-js", "-sd", str(store)]
    argv = [NATS_SERVER, "-a", "127.0.0.1", "-p", str(port), *jetstream, *extra]
    try:
        return start_server("NATS", argv, port, timeout=30.0)
    except (ServerUnavailable, OSError) as exc:
        unavailable("nats-server", str(exc))


@pytest.fixture(name="server")
def server_fixture(tmp_path: Path) -> Iterator[Server]:
    server = own_server(tmp_path / "store")
    yield server
    server.stop()


async def test_a_killed_consumer_loses_nothing_and_repeats_only_unacknowledged(
    nc: Client, js: JetStreamContext, stream: Stream, tmp_path: Path
) -> None:
    total = 300
    payloads = [str(i) for i in range(total)]
    seqs = await publish(js, stream.subject(), [p.encode() for p in payloads])
    seq_of = dict(zip(payloads, seqs, strict=True))
    acks = AckLog()
    await acks.watch(nc, stream.name)
    config = {
        "stream": stream.name,
        "durable": "d",
        "url": URL,
        "ack_wait": 1.0,
        "handler_delay": 0.005,
    }
    first, second = await kill_and_restart(
        "_nats", config, set(payloads), tmp_path / "out", kill_after=100, timeout=60
    )
    assert set(first) | set(second) == set(payloads)
    await wait_until(lambda: all(acks.kinds(seq) == ["+ACK"] for seq in seqs), 20)
    # Handled by both lives: the first never acknowledged it (its one ack is of a later
    # delivery); nothing else was handled twice.
    again = set(first) & set(second)
    assert all(acks.by_seq[seq_of[p]][0][1] >= 2 for p in again)
    assert len(second) == len(set(second))
    state = await js.consumer_info(stream.name, "d")
    assert state.num_ack_pending == 0
    assert state.num_pending == 0


async def test_a_lost_server_is_reconnected_and_nothing_is_lost(server: Server) -> None:
    url = f"nats://{server.address}"
    admin = await nats.connect(
        url, max_reconnect_attempts=-1, reconnect_time_wait=0.1, error_cb=ignore
    )
    try:
        js = admin.jetstream(timeout=5.0)
        await js.add_stream(name="outage", subjects=["outage.>"])
        await publish(js, "outage.in", [f"a{i}".encode() for i in range(100)])
        handled: set[bytes] = set()
        producer = NATSProducer(
            "outage",
            "d",
            servers=url,
            ack_wait=2.0,
            fetch_timeout=0.5,
            reconnect_time_wait=0.1,
        )
        pipeline = Pipeline(producer=producer, handle_message=lambda m: handled.add(m.data))
        async with pipeline:
            await wait_until(lambda: len(handled) == 100, 20)
            server.kill()
            server.start()
            await wait_until(lambda: admin.is_connected, 20)
            for i in range(100):
                await publish_once(js, "outage.in", f"b{i}".encode())
            await wait_until(lambda: len(handled) == 200, 30)

            async def settled() -> bool:
                info = await js.consumer_info("outage", "d")
                return bool(info.num_ack_pending == 0 and info.num_pending == 0)

            await wait_until(settled, 20)
        expected = {f"{p}{i}".encode() for p in "ab" for i in range(100)}
        assert handled == expected
    finally:
        await admin.close()


async def ignore(exc: Exception) -> None:
    """The test's own connection does not log the outage it causes."""


async def publish_once(js: JetStreamContext, subject: str, payload: bytes) -> None:
    """Publish, trying again while the restarted server does not confirm (duplicates: same id)."""

    async def published() -> bool:
        try:
            await js.publish(
                subject, payload, timeout=1.0, headers={"Nats-Msg-Id": payload.decode()}
            )
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError, NoStreamResponseError):
            return False
        return True

    await wait_until(published, 30)


async def test_refused_credentials_fail_start_at_once(tmp_path: Path) -> None:
    server = own_server(tmp_path / "store", "--user", "u", "--pass", "right")
    try:
        url = f"nats://u:wrong@{server.address}"
        producer = NATSProducer("s", "d", servers=url, connect_timeout=30.0)
        pipeline = Pipeline(producer=producer, handle_message=lambda m: m)
        async with asyncio.timeout(15):  # far below connect_timeout: refused, not timed out
            with pytest.raises(ConnectionError, match="Authorization") as info:
                await pipeline.start()
        assert "wrong" not in str(info.value)
    finally:
        server.stop()


async def test_a_server_without_jetstream_fails_start_with_a_config_error() -> None:
    server = own_server(None)
    try:
        producer = NATSProducer("s", "d", servers=f"nats://{server.address}")
        async with asyncio.timeout(30):
            with pytest.raises(ConfigError, match="JetStream is not enabled"):
                await producer.prepare_for_start(10)
    finally:
        server.stop()


async def test_stop_is_bounded_when_the_server_is_gone(server: Server) -> None:
    url = f"nats://{server.address}"
    admin = await nats.connect(url, max_reconnect_attempts=0, error_cb=ignore)
    js = admin.jetstream(timeout=5.0)
    await js.add_stream(name="gone", subjects=["gone.>"])
    await publish(js, "gone.in", [f"m{i}".encode() for i in range(50)])
    await admin.close()
    handled: list[bytes] = []
    release = asyncio.Event()

    async def handle(message: Message) -> None:
        handled.append(message.data)
        if len(handled) > 10:
            await release.wait()  # held when the server goes: their acks cannot be sent

    producer = NATSProducer("gone", "d", servers=url, fetch_timeout=0.5, request_timeout=1.0)
    pipeline = Pipeline(
        producer=producer, handle_message=handle, processors={"concurrency": 2, "max_demand": 5}
    )
    await pipeline.start()
    await wait_until(lambda: len(handled) > 10, 20)
    server.kill()
    release.set()
    async with asyncio.timeout(60):  # far above every bound of the producer
        await pipeline.stop(timeout=5.0)
    assert not pipeline.running
    assert producer.held == 0
