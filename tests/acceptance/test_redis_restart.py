"""A Redis server killed with SIGKILL and restarted while a pipeline works through 5,000 entries.

The test starts a private ``redis-server`` on a free loopback port (append-only file,
fsync on every write, data in the test's directory), never the shared one. After the kill,
a second server opens the same files on another port, only to read the pending entries
list as it was at the kill. The server stays down longer than acknowledgements are retried,
so entries handled around the kill are delivered again: the test allows duplicates of those
pending at the kill, and of no other. Then the server is started again on the first port
and the pipeline, which kept retrying, reconnects and finishes.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from redis.asyncio import Redis

from underway.pipelines import Message, Pipeline
from underway.pipelines.producers.redis_streams import RedisStreamProducer

pytestmark = [pytest.mark.acceptance, pytest.mark.slow]

ENTRIES = 5000


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrivateRedis:
    """``redis-server`` processes on loopback, all on the data directory ``workdir``."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = _free_port()
        self.processes: list[subprocess.Popen[bytes]] = []

    def url(self, port: int | None = None) -> str:
        return f"redis://127.0.0.1:{port or self.port}/0"

    async def start(self, port: int | None = None) -> subprocess.Popen[bytes]:
        """Start a server on ``port`` (default: the main one) and wait until it answers."""
        port = port or self.port
        log = self.workdir / f"redis-{len(self.processes)}.log"
        options = {
            "port": str(port),
            "bind": "127.0.0.1",
            "dir": str(self.workdir),
            "appendonly": "yes",
            "appendfsync": "always",
            "save": "",
            "logfile": str(log),
        }
        argv = [self.binary]
        for name, value in options.items():
            argv += [f"--{name}", value]
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self.processes.append(process)
        client = Redis.from_url(self.url(port), socket_connect_timeout=1, socket_timeout=2)
        try:
            deadline = time.monotonic() + 15
            while True:
                try:
                    if await client.ping():
                        return process
                except Exception as exc:
                    if process.poll() is not None or time.monotonic() > deadline:
                        tail = log.read_text()[-2000:] if log.exists() else ""
                        raise AssertionError(
                            f"redis-server on {port} did not start:\n{tail}"
                        ) from exc
                    await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        """SIGKILL ``process`` and reap it."""
        process.kill()
        process.wait(timeout=10)

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                self.kill(process)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[PrivateRedis]:
    binary = shutil.which("redis-server")
    if binary is None:
        reason = "redis-server is not on PATH: the restart test starts a private server"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: a missing server is a failure)", pytrace=False)
        pytest.skip(reason)
    private = PrivateRedis(binary, tmp_path)
    try:
        yield private
    finally:
        private.stop_all()


async def _pending_ids(url: str, stream: str) -> set[str]:
    client = Redis.from_url(url)
    try:
        rows = await client.xpending_range(stream, "g", "-", "+", ENTRIES)
    finally:
        await client.aclose()
    return {cast(bytes, row["message_id"]).decode() for row in rows}


async def test_pipeline_survives_a_server_kill_and_restart(servers: PrivateRedis) -> None:
    main = await servers.start()
    stream = "orders"
    client = Redis.from_url(servers.url())
    await client.xgroup_create(stream, "g", "0", mkstream=True)
    ids: list[str] = []
    for start in range(0, ENTRIES, 1000):
        pipe = client.pipeline(transaction=False)
        for i in range(start, start + 1000):
            pipe.xadd(stream, {"i": i})
        ids += [i.decode() for i in await pipe.execute()]
    await client.aclose()

    handled: Counter[str] = Counter()

    async def handle(message: Message) -> None:
        await asyncio.sleep(0.001)
        handled[message.metadata["id"]] += 1

    producer = RedisStreamProducer(
        stream, "g", url=servers.url(), block=0.2, claim_idle=1.0, reconnect_interval=0.1
    )
    pipeline = Pipeline(
        producer=producer,
        handle_message=handle,
        processors={"concurrency": 8, "max_demand": 20},
    )
    async with pipeline:
        async with asyncio.timeout(30):
            while len(handled) < 1500:
                await asyncio.sleep(0.005)
        servers.kill(main)
        handled_at_kill = len(handled)
        inspector = _free_port()
        reader = await servers.start(inspector)
        pending_at_kill = await _pending_ids(servers.url(inspector), stream)
        servers.kill(reader)
        await asyncio.sleep(1.0)  # longer than acknowledgements are retried
        await servers.start()
        async with asyncio.timeout(60):
            while len(handled) < ENTRIES:
                await asyncio.sleep(0.02)
            while await _pending_ids(servers.url(), stream):
                await asyncio.sleep(0.05)

    client = Redis.from_url(servers.url())
    try:
        assert await client.xlen(stream) == ENTRIES  # nothing lost by the kill
        assert (await client.xpending(stream, "g"))["pending"] == 0
    finally:
        await client.aclose()
    assert handled_at_kill < ENTRIES
    assert pending_at_kill  # the kill interrupted work in flight
    assert set(handled) == set(ids)
    duplicates = {i for i, n in handled.items() if n > 1}
    assert duplicates <= pending_at_kill
