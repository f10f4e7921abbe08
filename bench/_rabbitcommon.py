"""Helpers shared by the per-system scripts of ``bench.pipelines``.

Each script runs by path in the venv of its system, so this module is imported as
``_rabbitcommon`` and needs only what every one of those venvs has: the standard library,
``aio_pika`` and ``pamqp`` (which aio-pika brings).

Filling the queue is not part of any measurement, but with one ``basic_publish`` call per
message a Python client needs seconds for tens of thousands of messages. So the queue is
filled by :func:`fill_queue`, a minimal AMQP 0-9-1 publisher: it opens a connection and a
channel with the handshake frames, writes the three frames of one message (publish, content
header, body) N times without publisher confirms, closes, and then waits until the broker
counts N ready messages in the queue.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from typing import Any
from urllib.parse import unquote, urlsplit

import aio_pika
from pamqp import commands, frame, header
from pamqp.body import ContentBody
from pamqp.exceptions import UnmarshalingException

URL = "amqp://guest:guest@127.0.0.1:5672/"
BODY = b"0123456789abcdef"
TIMEOUT = 300.0
STALL = 30.0
UNAVAILABLE = 3
CHUNK = 1000


def parser() -> argparse.ArgumentParser:
    """The options every script takes."""
    p = argparse.ArgumentParser()
    p.add_argument("--url", default=URL)
    p.add_argument("--queue", default=None, help="queue name (default: bench-<system>-<pid>)")
    p.add_argument("--messages", type=int, default=10_000)
    p.add_argument("--prefetch", type=int, default=100)
    p.add_argument("--body-size", type=int, default=len(BODY))
    return p


def queue_name(args: argparse.Namespace, system: str) -> str:
    """The queue a run uses: ``--queue`` or a fresh name."""
    return str(args.queue or f"bench-{system}-{os.getpid()}-{time.monotonic_ns()}")


def body_of(size: int) -> bytes:
    """A message body of ``size`` bytes."""
    return (BODY * (size // len(BODY) + 1))[:size]


class _Wire:
    """One AMQP connection spoken frame by frame, for publishing only."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buffer = b""

    async def receive(self) -> Any:
        while True:
            if len(self.buffer) >= 7:
                try:
                    used, _, value = frame.unmarshal(self.buffer)
                except UnmarshalingException:  # an incomplete frame: read more
                    used = 0
                if used:
                    self.buffer = self.buffer[used:]
                    return value
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError("the broker closed the connection")
            self.buffer += data

    async def expect(self, kind: type[Any]) -> Any:
        value = await self.receive()
        if isinstance(value, commands.Connection.Close | commands.Channel.Close):
            raise ConnectionError(f"the broker refused: {value.reply_code} {value.reply_text}")
        if not isinstance(value, kind):
            raise ConnectionError(f"expected {kind.__name__}, got {value!r}")
        return value

    def send(self, value: Any, channel: int = 0) -> None:
        self.writer.write(frame.marshal(value, channel))


async def _publish_raw(url: str, queue: str, n: int, body: bytes) -> None:
    parts = urlsplit(url)
    user, password = unquote(parts.username or "guest"), unquote(parts.password or "guest")
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    host, port = parts.hostname or "127.0.0.1", parts.port or 5672
    reader, writer = await asyncio.open_connection(host, port)
    wire = _Wire(reader, writer)
    try:
        wire.send(header.ProtocolHeader())
        await wire.expect(commands.Connection.Start)
        wire.send(commands.Connection.StartOk(response=f"\0{user}\0{password}"))
        tune = await wire.expect(commands.Connection.Tune)
        wire.send(commands.Connection.TuneOk(tune.channel_max, tune.frame_max, 0))
        wire.send(commands.Connection.Open(virtual_host=vhost))
        await wire.expect(commands.Connection.OpenOk)
        wire.send(commands.Channel.Open(), 1)
        await wire.expect(commands.Channel.OpenOk)
        one = b"".join(
            frame.marshal(value, 1)
            for value in (
                commands.Basic.Publish(exchange="", routing_key=queue),
                header.ContentHeader(0, len(body), commands.Basic.Properties(delivery_mode=1)),
                ContentBody(body),
            )
        )
        for start in range(0, n, CHUNK):
            writer.write(one * min(CHUNK, n - start))
            await writer.drain()
        wire.send(commands.Connection.Close(200, "done", 0, 0))
        await wire.expect(commands.Connection.CloseOk)
    finally:
        writer.close()


async def declare(channel: aio_pika.abc.AbstractChannel, queue: str) -> Any:
    """Declare ``queue`` the way every system of the bench declares it: a durable classic queue.

    The messages themselves are transient (``delivery_mode`` 1), so the broker keeps them in
    memory; durable is what underway's producer declares, so every system declares that.
    """
    return await channel.declare_queue(queue, durable=True, auto_delete=False)


async def fill_queue(url: str, queue: str, n: int, body: bytes) -> float:
    """Declare ``queue`` afresh and publish ``n`` transient messages; returns the seconds taken.

    Returns once the broker counts ``n`` ready messages in the queue.
    """
    t0 = time.perf_counter()
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        await channel.queue_delete(queue)
        await declare(channel, queue)
        async with asyncio.timeout(TIMEOUT):
            await _publish_raw(url, queue, n, body)
        while (ready := await depth(channel, queue)) < n:
            if time.perf_counter() - t0 > TIMEOUT:
                raise SystemExit(f"only {ready} of {n} messages reached the queue")
            await asyncio.sleep(0.01)
        if ready != n:
            raise SystemExit(f"{ready} messages in the queue, expected {n}")
    finally:
        await connection.close()
    return time.perf_counter() - t0


async def depth(channel: aio_pika.abc.AbstractChannel, queue: str) -> int:
    """Ready messages in ``queue`` (a passive declare's ``message_count``)."""
    declared = await channel.declare_queue(queue, passive=True)
    return int(declared.declaration_result.message_count or 0)


async def left_and_delete(url: str, queue: str) -> int:
    """Messages left in ``queue`` (ready, after the consumer's connection closed); deletes it.

    A message delivered but never acknowledged returns to the queue when the connection
    that held it closes, so 0 here means every message was acknowledged.
    """
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        left = await depth(channel, queue)
        await channel.queue_delete(queue)
        return left
    finally:
        await connection.close()


async def delete_queue(url: str, queue: str) -> None:
    """Delete ``queue`` if it exists."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        await channel.queue_delete(queue)
    finally:
        await connection.close()


class Counter:
    """Counts handled messages and notes the moment the last expected one was handled."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self.done = asyncio.Event()
        self.at = 0.0

    def hit(self, k: int = 1) -> None:
        """Count ``k`` more messages."""
        self.count += k
        if self.count >= self.n and not self.done.is_set():
            self.at = time.perf_counter()
            self.done.set()

    async def wait(self, t0: float) -> None:
        """Wait until ``n`` messages were handled.

        Fails after ``TIMEOUT``, or once no message was handled for ``STALL`` seconds (the
        broker lost the transient messages in a restart, for instance).
        """
        deadline = t0 + TIMEOUT
        seen, moved = self.count, time.perf_counter()
        while not self.done.is_set():
            now = time.perf_counter()
            if self.count != seen:
                seen, moved = self.count, now
            elif now - moved > STALL:
                raise SystemExit(
                    f"only {self.count} of {self.n} handled, none in the last {STALL:.0f} s"
                )
            if now > deadline:
                raise SystemExit(f"only {self.count} of {self.n} handled in {TIMEOUT:.0f} s")
            try:
                await asyncio.wait_for(self.done.wait(), 1.0)
            except TimeoutError:
                continue


async def measure(
    url: str,
    queue: str,
    n: int,
    body: bytes,
    consume: Callable[[Counter], Awaitable[float]],
) -> dict[str, Any]:
    """Fill the queue, run ``consume`` (which returns when it stopped), check the queue.

    ``consume(counter)`` starts the consumer right away, has its handler call
    ``counter.hit()``, waits for the counter, stops the consumer the system's own way and
    returns ``perf_counter()`` just before starting it. The run counts until the consumer
    stopped with every acknowledgement sent and its connection closed. ``cpu_s`` is the CPU
    time this process used meanwhile (user and system), which other load on the machine
    disturbs less than the wall-clock time.
    """
    try:
        fill_s = await fill_queue(url, queue, n, body)
        counter = Counter(n)
        cpu0 = time.process_time()
        t0 = await consume(counter)
        stopped = time.perf_counter()
        cpu_s = time.process_time() - cpu0
        left = await left_and_delete(url, queue)
    except BaseException:
        await delete_queue(url, queue)
        raise
    if counter.count != n or left != 0:
        raise SystemExit(f"handled {counter.count} of {n}; {left} left in the queue after stop")
    return {
        "fill_s": fill_s,
        "handled_s": counter.at - t0,
        "acked_s": stopped - t0,
        "cpu_s": cpu_s,
        "handled": counter.count,
        "left": left,
    }


def report(out: dict[str, Any], package: str, loop: str = "asyncio") -> None:
    """Print the figures with the package's version, the loop and Python as a JSON line."""
    out["version"] = version(package)
    out["aio_pika"] = version("aio-pika")
    out["loop"] = loop
    out["python"] = platform.python_version()
    print(json.dumps(out), flush=True)


def unavailable(reason: str) -> None:
    """Print why the system cannot run here and exit with ``UNAVAILABLE``."""
    print(json.dumps({"unavailable": reason}), flush=True)
    raise SystemExit(UNAVAILABLE)
