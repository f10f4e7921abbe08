"""One RabbitMQ connection, its channel and consumer: the acknowledger of its deliveries.

A session lives until its connection or channel closes. Delivery tags only mean something
on the channel that delivered them, so a session settles only its own deliveries and drops
every acknowledgement once its channel is gone (the broker then redelivers those messages).

Settling never waits on a channel that may be dead: frames go into the connection's bounded
write queue, whose writer stops for good when the connection dies, so each send races the
channel's closing and gives up past ``_SEND_TIMEOUT``; giving up ends the session, and the
producer reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aio_pika
import aiormq.abc
from pamqp.commands import Basic
from yarl import URL

from underway.pipelines.message import Message
from underway.pipelines.producers.rabbitmq._acks import (
    FailureAction,
    Frame,
    Unsettled,
    check_options,
    failure_action,
    plan,
)

__all__ = ["Session", "Settings", "safe_url"]

_log = logging.getLogger("underway.pipelines.rabbitmq")

_CLOSE_TIMEOUT = 5.0
# Writing settlement frames takes milliseconds on a live connection; past this bound the
# connection is taken for dead even though it has not closed yet.
_SEND_TIMEOUT = 30.0

OnDelivery = Callable[["Session", aiormq.abc.DeliveredMessage], Awaitable[None]]


def safe_url(url: str) -> str:
    """``url`` with its password masked, for logs and error messages."""
    try:
        parsed = URL(url)
    except (TypeError, ValueError):
        return "<invalid url>"
    return str(parsed.with_password("******")) if parsed.password else url


@dataclass(frozen=True)
class Settings:
    """What a session needs to know to connect, consume and settle."""

    queue: str
    url: str
    declare: bool
    queue_arguments: Mapping[str, Any] | None
    prefetch: int
    on_failure: FailureAction
    connect_timeout: float


class Session:
    """A connection, its channel and consumer, and the deliveries not yet settled.

    It is the acknowledger of every message it delivered: ``ack`` settles them on this
    channel, batched into as few frames as possible, or drops the acknowledgement when the
    channel has closed since.
    """

    def __init__(self, settings: Settings, number: int) -> None:
        self.settings = settings
        self.number = number
        self.connection: aio_pika.abc.AbstractConnection | None = None
        self.channel: aiormq.abc.AbstractChannel | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None  # wraps ``channel``
        self.consumer_tag: str | None = None
        self.stale = False
        self.unsettled = Unsettled()
        self._lock = asyncio.Lock()
        self._dropped = 0
        self._reported: set[str] = set()
        self._closer: asyncio.Task[Any] | None = None
        self._ended: asyncio.Future[None] | None = None  # done once the channel is unusable

    def __repr__(self) -> str:
        return f"<RabbitMQ session {self.number} on {self.settings.queue!r}>"

    # -- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, open a channel, declare (or check) the queue and set the prefetch.

        With ``declare`` and no ``queue_arguments``, a queue that exists is used as it is
        (its dead-letter exchange, for instance, stays); a missing one is declared durable.
        With ``queue_arguments``, the queue is declared with them, which the broker refuses
        when the queue exists with other arguments.
        """
        settings = self.settings
        self.connection = await aio_pika.connect(
            settings.url,
            timeout=settings.connect_timeout,
            client_properties={"connection_name": f"underway pipeline ({settings.queue})"},
        )
        self.channel = await self._new_channel()
        if settings.declare and settings.queue_arguments is None:
            try:  # an existing queue is used as it is, whatever its arguments
                await self.channel.queue_declare(settings.queue, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                self.channel = await self._new_channel()
                await self.channel.queue_declare(settings.queue, durable=True)
        else:
            await self.channel.queue_declare(
                settings.queue,
                durable=True,
                passive=not settings.declare,
                arguments=dict(settings.queue_arguments) if settings.queue_arguments else None,
            )
        await self.channel.basic_qos(prefetch_count=settings.prefetch)
        self._watch(self.channel)

    def _watch(self, channel: aiormq.abc.AbstractChannel) -> None:
        """Have ``_ended`` resolved when ``channel`` (or its connection) closes."""
        ended = self._ended = asyncio.get_running_loop().create_future()

        def on_closed(closing: asyncio.Future[Any]) -> None:
            if not closing.cancelled():
                closing.exception()  # retrieved: the close is reported by the producer
            if not ended.done():
                ended.set_result(None)

        channel.closing.add_done_callback(on_closed)

    async def _new_channel(self) -> aiormq.abc.AbstractChannel:
        assert self.connection is not None
        self._channel = self.connection.channel(publisher_confirms=False)
        await self._channel.initialize()
        return await self._channel.get_underlay_channel()

    async def consume(self, on_delivery: OnDelivery) -> None:
        """Start the consumer; each delivery is tracked, then passed to ``on_delivery``."""
        assert self.channel is not None

        async def deliver(delivered: aiormq.abc.DeliveredMessage) -> None:
            frame = delivered.delivery
            if not isinstance(frame, Basic.Deliver) or frame.delivery_tag is None:
                return
            self.unsettled.add(frame.delivery_tag)
            await on_delivery(self, delivered)

        self.channel.on_consumer_cancel_callbacks.add(self._on_cancelled_by_broker)
        ok = await self.channel.basic_consume(self.settings.queue, deliver)
        self.consumer_tag = ok.consumer_tag

    def _on_cancelled_by_broker(self, frame: Basic.Cancel) -> None:
        """The broker cancelled the consumer (its queue was deleted, for instance).

        The channel is closed so that the session ends and the producer reconnects, which
        declares the queue again (or finds out that it is gone). Closing waits for the
        channel's reader, which runs this callback, hence the task.
        """
        if frame.consumer_tag == self.consumer_tag and self.channel is not None:
            _log.warning(
                "RabbitMQ cancelled the consumer of queue %r; reconnecting", self.settings.queue
            )
            self.consumer_tag = None
            self._closer = asyncio.get_running_loop().create_task(self.channel.close())

    async def cancel_consumer(self) -> None:
        """Ask the broker for no more deliveries (``basic.cancel``); waits for its reply."""
        tag, self.consumer_tag = self.consumer_tag, None
        if tag is None or self.channel is None or self.channel.is_closed:
            return
        with contextlib.suppress(aiormq.exceptions.AMQPError, RuntimeError, ConnectionError):
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                await self.channel.basic_cancel(tag)

    async def wait_closed(self) -> None:
        """Return once the channel (or its connection) has closed, or settling gave up on it."""
        assert self._ended is not None
        await asyncio.wait({self._ended})

    @property
    def alive(self) -> bool:
        """Whether acknowledgements can still be sent on this session's channel."""
        return not self.stale and self.channel is not None and not self.channel.is_closed

    async def close(self) -> None:
        """Close the channel, then the connection (each within a bound); never raises."""
        self.stale = True
        channel, connection = self.channel, self.connection
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_CLOSE_TIMEOUT):
                    await channel.close()
        if connection is not None and not connection.is_closed:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_CLOSE_TIMEOUT):
                    await connection.close()

    # -- acknowledgement -------------------------------------------------------------

    @staticmethod
    def check_ack_options(options: Mapping[str, Any]) -> None:
        """Raise ``ConfigError`` for ack options RabbitMQ cannot honour."""
        check_options(options)

    async def ack(self, successful: Sequence[Message], failed: Sequence[Message]) -> None:
        """Acknowledge ``successful``; settle ``failed`` per their ``on_failure``.

        A contiguous run of successes (every delivery of this channel up to a tag is in
        this call or already settled) goes as one ``multiple`` ack. When the channel has
        closed since the messages were delivered, nothing is sent: the broker redelivers
        them, and a new channel's tags would name different messages.
        """
        async with self._lock:  # frames leave in the order their tags were claimed
            if not self.alive:
                self._drop(len(successful) + len(failed))
                return
            acks = [m.metadata["delivery_tag"] for m in successful if self._claim(m)]
            rejects: list[tuple[int, bool]] = []
            for message in failed:
                if not self._claim(message):
                    continue
                tag = message.metadata["delivery_tag"]
                action = failure_action(message.ack_options, self.settings.on_failure, self._report)
                if action == "ack":
                    acks.append(tag)
                else:
                    rejects.append((tag, action == "requeue"))
            await self._send(plan(acks, rejects, self.unsettled.lowest()))

    async def requeue(self, delivered: Sequence[aiormq.abc.DeliveredMessage]) -> None:
        """Give deliveries that never reached the pipeline back to the broker."""
        async with self._lock:
            if self.alive:
                tags = [d.delivery_tag for d in delivered if self.unsettled.claim(d.delivery_tag)]
                await self._send([Frame(tag, requeue=True) for tag in tags if tag is not None])

    def _claim(self, message: Message) -> bool:
        tag = message.metadata.get("delivery_tag")
        if self.unsettled.claim(tag):
            return True
        _log.error(
            "RabbitMQ: message with delivery_tag %r is not an unsettled delivery of %r "
            "(already settled, or its metadata was changed); not settled again",
            tag,
            self,
        )
        return False

    def _report(self, key: str, text: str) -> None:
        if key not in self._reported:
            self._reported.add(key)
            _log.error("RabbitMQ acknowledger of queue %r: %s", self.settings.queue, text)

    async def _send(self, frames: list[Frame]) -> None:
        """Send ``frames`` in order, unless the channel closes first (caller holds the lock).

        Frames are queued to the connection's writer, which sends them in order, before a
        ``channel.close`` issued later. Acks and rejects have no reply, so nothing is
        awaited past the queue; but a full queue waits for its writer, which a dead
        connection no longer runs. Hence the race with the channel's end and the bound:
        frames not queued by then are dropped with the channel (the broker redelivers
        those messages), and past the bound the session is given up.
        """
        channel, ended = self.channel, self._ended
        if not frames or channel is None or ended is None:
            return
        writing = asyncio.get_running_loop().create_task(
            self._write(channel, frames), name=f"underway-rabbitmq-settle-{self.number}"
        )
        try:
            done, _ = await asyncio.wait(
                {writing, ended}, timeout=_SEND_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if not writing.done():
                writing.cancel()
                await asyncio.wait({writing})
        if writing in done:
            return
        if ended.done():
            _log.warning(
                "RabbitMQ: channel of queue %r closed while settling messages; "
                "the broker redelivers the ones not settled",
                self.settings.queue,
            )
            return
        self.stale = True
        ended.set_result(None)
        _log.warning(
            "RabbitMQ: settling messages of queue %r on %r took over %gs; giving up its "
            "connection (the broker redelivers the messages not settled)",
            self.settings.queue,
            self,
            _SEND_TIMEOUT,
        )

    async def _write(self, channel: aiormq.abc.AbstractChannel, frames: list[Frame]) -> None:
        try:
            for tag, multiple, requeue in frames:
                if requeue is None:
                    await channel.basic_ack(tag, multiple=multiple, wait=False)
                else:
                    await channel.basic_reject(tag, requeue=requeue, wait=False)
        except (aiormq.exceptions.AMQPError, RuntimeError, ConnectionError) as exc:
            _log.warning(
                "RabbitMQ: channel of queue %r closed while settling messages (%s); "
                "the broker redelivers the ones not settled",
                self.settings.queue,
                exc,
            )

    def _drop(self, count: int) -> None:
        if count and not self._dropped:
            _log.warning(
                "RabbitMQ: dropping acknowledgements of %d message(s) delivered on a closed "
                "channel of queue %r; the broker redelivers them",
                count,
                self.settings.queue,
            )
        self._dropped += count
