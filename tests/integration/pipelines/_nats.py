"""Where the NATS tests find the server, their fixtures, and the killed-consumer hooks.

A test module imports the fixtures (``js_fixture``, ``stream_fixture``) to use them as
``js`` and ``stream``. ``killed_producer`` and ``killed_key`` are what
:mod:`tests.integration.pipelines._killed` asks of this module.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from tests.conftest import SERVICES
from underway.pipelines import Message
from underway.pipelines.producers.nats import NATSProducer

__all__ = [
    "HOST",
    "PORT",
    "URL",
    "AckLog",
    "Stream",
    "js_fixture",
    "killed_key",
    "killed_producer",
    "publish",
    "stream_fixture",
]

HOST, PORT = SERVICES["nats"].address
URL = f"nats://{HOST}:{PORT}"


class AckLog:
    """Every acknowledgement the server receives for a stream: ``{seq: [(kind, delivery)]}``.

    JetStream acknowledgements are publications to the message's reply subject,
    ``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>...``: a subscription to
    ``$JS.ACK.<stream>.>`` sees each one the server routes (``+WPI`` signals aside), with the
    delivery it acknowledges.
    """

    def __init__(self) -> None:
        self.by_seq: defaultdict[int, list[tuple[str, int]]] = defaultdict(list)
        self.naks: defaultdict[int, list[float]] = defaultdict(list)
        self.count = 0

    async def watch(self, nc: Client, stream: str) -> None:
        """Start counting (the subscription is in place when this returns)."""
        await nc.subscribe(f"$JS.ACK.{stream}.>", cb=self._on_ack)
        await nc.flush()

    def nak_delays(self, seq: int) -> list[float]:
        """The delay (seconds; 0: none) each ``-NAK`` of message ``seq`` asked for."""
        return self.naks[seq]

    def kinds(self, seq: int) -> list[str]:
        """The kinds of acknowledgement (``+ACK``, ``-NAK``, ``+TERM``) of message ``seq``."""
        return [kind for kind, _ in self.by_seq[seq]]

    async def _on_ack(self, msg: Msg) -> None:
        tokens = msg.subject.split(".")
        delivered, seq = (tokens[4], tokens[5]) if len(tokens) == 9 else (tokens[6], tokens[7])
        kind, _, options = msg.data.partition(b" ")
        kind = kind or b"+ACK"  # an empty payload is an ack
        if kind == b"-NAK":
            delay = json.loads(options).get("delay", 0) if options else 0
            self.naks[int(seq)].append(delay / 1e9)
        if kind != b"+WPI":
            self.by_seq[int(seq)].append((kind.decode(), int(delivered)))
            self.count += 1


class Stream:
    """A stream of one test: its name, subjects under ``{name}.``, a dead-letter stream."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.subjects = f"{name}.>"
        self.dead = f"{name}_dead"
        self.dead_subject = f"{name}-dead.msgs"

    def subject(self, tail: str = "in") -> str:
        """A subject of the stream."""
        return f"{self.name}.{tail}"


@pytest.fixture(name="nc")
async def nc_fixture() -> AsyncIterator[Client]:
    """The test's own connection."""
    client = await nats.connect(URL, connect_timeout=5, max_reconnect_attempts=1)
    yield client
    await client.close()


@pytest.fixture(name="js")
async def js_fixture(nc: Client) -> JetStreamContext:
    """JetStream on the test's own connection, to publish and inspect."""
    return nc.jetstream(timeout=10.0)


@pytest.fixture(name="stream")
async def stream_fixture(js: JetStreamContext) -> AsyncIterator[Stream]:
    """A fresh stream (and its dead-letter stream) of this test alone, deleted after it."""
    stream = Stream(f"uwtest{uuid.uuid4().hex[:12]}")
    await js.add_stream(name=stream.name, subjects=[stream.subjects])
    await js.add_stream(name=stream.dead, subjects=[stream.dead_subject])
    yield stream
    for name in (stream.name, stream.dead):
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(name)


async def publish(js: JetStreamContext, subject: str, payloads: list[bytes]) -> list[int]:
    """Publish ``payloads`` (confirmed by the stream, in order); returns their sequences."""
    seqs: list[int] = []
    for start in range(0, len(payloads), 500):
        futures = [await js.publish_async(subject, p) for p in payloads[start : start + 500]]
        seqs += [(await future).seq for future in futures]
    return seqs


def killed_producer(config: dict[str, Any]) -> NATSProducer:
    """The producer of the killed consumer: a short ``ack_wait`` so redelivery is fast."""
    return NATSProducer(
        config["stream"],
        config["durable"],
        servers=config["url"],
        batch=20,
        fetch_timeout=1.0,
        ack_wait=float(config.get("ack_wait", 1.0)),
    )


def killed_key(message: Message) -> str:
    """A message's key in the killed consumer's output: its payload."""
    data: bytes = message.data
    return data.decode()
