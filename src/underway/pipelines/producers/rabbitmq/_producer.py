"""Consume a RabbitMQ queue with back-pressure, batched acks and reconnection (aio-pika).

Install the extra: ``pip install underway[rabbitmq]``.

Example::

    from underway.pipelines import Pipeline
    from underway.pipelines.producers.rabbitmq import RabbitMQProducer

    producer = RabbitMQProducer("orders", decoder=json.loads, on_failure="reject")
    async with Pipeline(producer=producer, handle_message=handle):
        ...

Delivery is at least once. The broker never has more unacknowledged messages out than the
prefetch (by default the pipeline's capacity), so a slow pipeline leaves the rest in the
queue. After a lost connection or a broker restart the producer reconnects; messages that
were delivered but not yet acknowledged are redelivered by the broker, and their late
acknowledgements are dropped rather than sent on the new channel, where the same delivery
tags name other messages. An acknowledgement never waits on a dead connection: it is dropped
as soon as its channel closes, and the pipeline goes on consuming on the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Literal

import aiormq.abc
import aiormq.exceptions

from underway.errors import ConfigError
from underway.pipelines.message import Message, decode_message
from underway.pipelines.producers.rabbitmq._acks import FAILURE_ACTIONS, FailureAction
from underway.pipelines.producers.rabbitmq._session import Session, Settings, safe_url

__all__ = ["RabbitMQProducer"]

_log = logging.getLogger("underway.pipelines.rabbitmq")

_MAX_PREFETCH = 65_535  # prefetch_count is an unsigned 16-bit field in AMQP 0-9-1
_CONFIG_ERRORS = (
    aiormq.exceptions.ChannelNotFoundEntity,
    aiormq.exceptions.ChannelPreconditionFailed,
    aiormq.exceptions.ChannelAccessRefused,
)

Buffered = tuple[Session, aiormq.abc.DeliveredMessage]


class RabbitMQProducer:
    """A pipeline producer that consumes one RabbitMQ queue.

    Each message's ``data`` is the body (``bytes``), or ``decoder(body)``; a body the
    decoder rejects fails its message with :class:`~underway.errors.DecodeError`. Its
    ``metadata`` holds ``delivery_tag``, ``redelivered``, ``exchange``, ``routing_key``,
    ``headers``, ``message_id``, ``correlation_id``, ``content_type`` and ``timestamp``
    (``delivery_tag`` identifies the delivery to the acknowledger: do not change it).

    Successful messages are acknowledged. Failed ones are settled per ``on_failure``, or per
    the message's own ``message.configure_ack(on_failure=...)``:

    - ``"reject"``: rejected without requeue; the broker dead-letters the message when the
      queue has a dead-letter exchange (``x-dead-letter-exchange``), else drops it;
    - ``"requeue"``: returned to the queue and delivered again;
    - ``"ack"``: acknowledged, so dropped.

    An unknown per-message value is logged as an error and the producer's ``on_failure``
    applies.

    Args:
        queue: Name of the queue to consume.
        url: AMQP URL of the broker.
        declare: Declare the queue (durable) if it is missing; with ``False`` it must
            exist. Without ``queue_arguments`` an existing queue is used as it is.
        queue_arguments: Arguments of the queue, such as
            ``{"x-dead-letter-exchange": "dlx"}``; the queue is declared with them, so an
            existing queue with other arguments is a :class:`ConfigError` at start.
        prefetch: Most unacknowledged messages the broker sends (``basic.qos``); by
            default the pipeline's :attr:`~underway.pipelines.Pipeline.capacity` (the
            most messages its processors and batchers hold at once).
        decoder: Turns a body into ``data``; ``None`` keeps the raw bytes.
        on_success: How successful messages are settled; only ``"ack"``.
        on_failure: How failed messages are settled: ``"reject"``, ``"requeue"`` or
            ``"ack"``.
        reconnect_interval: Seconds between reconnection attempts after the connection
            is lost. A connection that dies silently is noticed by AMQP heartbeats
            (every 60 s unless the URL sets ``?heartbeat=`` seconds).
        connect_timeout: Seconds allowed to connect and set up the channel; past it,
            starting the pipeline fails with :class:`ConnectionError`.

    Attributes:
        reconnects: How many times the connection was lost and re-established (each
            logged once as a warning).

    Raises:
        ConfigError: An option is invalid.
    """

    def __init__(
        self,
        queue: str,
        *,
        url: str = "amqp://guest:guest@127.0.0.1:5672/",
        declare: bool = True,
        queue_arguments: Mapping[str, Any] | None = None,
        prefetch: int | None = None,
        decoder: Callable[[bytes], Any] | None = None,
        on_success: Literal["ack"] = "ack",
        on_failure: FailureAction = "reject",
        reconnect_interval: float = 1.0,
        connect_timeout: float = 10.0,
    ) -> None:
        if not isinstance(queue, str) or not queue:
            raise ConfigError(f"queue must be a non-empty str, got {queue!r}")
        if not isinstance(url, str) or not url.startswith(("amqp://", "amqps://")):
            raise ConfigError(f"url must be an amqp:// or amqps:// URL, got {safe_url(url)!r}")
        if queue_arguments is not None and not isinstance(queue_arguments, Mapping):
            raise ConfigError(f"queue_arguments must be a mapping, got {queue_arguments!r}")
        if prefetch is not None and (
            isinstance(prefetch, bool)
            or not isinstance(prefetch, int)
            or not 1 <= prefetch <= _MAX_PREFETCH
        ):
            raise ConfigError(
                f"prefetch must be an int from 1 to {_MAX_PREFETCH}, got {prefetch!r}"
            )
        if decoder is not None and not callable(decoder):
            raise ConfigError(f"decoder must be callable, got {decoder!r}")
        if on_success != "ack":
            raise ConfigError(f"on_success must be 'ack' (the only choice), got {on_success!r}")
        if on_failure not in FAILURE_ACTIONS:
            raise ConfigError(f"on_failure must be one of {FAILURE_ACTIONS}, got {on_failure!r}")
        for name, value in (
            ("reconnect_interval", reconnect_interval),
            ("connect_timeout", connect_timeout),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"{name} must be a number > 0, got {value!r}")
        self.queue = queue
        self.url = url
        self.declare = declare
        self.queue_arguments = dict(queue_arguments) if queue_arguments is not None else None
        self.prefetch = prefetch
        self.decoder = decoder
        self.on_failure: FailureAction = on_failure
        self.reconnect_interval = float(reconnect_interval)
        self.connect_timeout = float(connect_timeout)
        self.reconnects = 0
        self._settings: Settings | None = None
        self._session: Session | None = None
        self._buffer: deque[Buffered] = deque()
        self._available = asyncio.Event()
        self._lock = asyncio.Lock()
        self._supervisor: asyncio.Task[None] | None = None
        self._draining = False
        self._closing = False

    def __repr__(self) -> str:
        return f"RabbitMQProducer({self.queue!r}, url={safe_url(self.url)!r})"

    @property
    def buffered(self) -> int:
        """Messages received from the broker and not yet handed to the pipeline."""
        return len(self._buffer)

    # -- pipeline hooks ----------------------------------------------------------------

    async def prepare_for_start(self, capacity: int) -> None:
        """Connect, set the prefetch (``prefetch`` or ``capacity``) and start consuming.

        Raises:
            ConnectionError: The broker cannot be reached within ``connect_timeout``.
            ConfigError: The broker refused the queue (missing with ``declare=False``,
                declared elsewhere with other arguments, or access refused).
        """
        if self._supervisor is not None:
            raise RuntimeError(f"{self!r} is already started")
        prefetch = self.prefetch or max(1, min(capacity, _MAX_PREFETCH))
        self._settings = Settings(
            queue=self.queue,
            url=self.url,
            declare=self.declare,
            queue_arguments=self.queue_arguments,
            prefetch=prefetch,
            on_failure=self.on_failure,
            connect_timeout=self.connect_timeout,
        )
        self._draining = self._closing = False
        self._buffer.clear()
        self._available = asyncio.Event()
        self._lock = asyncio.Lock()
        session = Session(self._settings, number=1)
        try:
            await self._open(session)
        except _CONFIG_ERRORS as exc:
            await session.close()
            raise ConfigError(f"RabbitMQ refused queue {self.queue!r}: {exc}") from exc
        except (
            OSError,
            TimeoutError,
            aiormq.exceptions.AMQPError,
            aiormq.exceptions.ChannelInvalidStateError,
        ) as exc:
            await session.close()
            raise ConnectionError(
                f"cannot connect to RabbitMQ at {safe_url(self.url)} within "
                f"{self.connect_timeout:g}s: {type(exc).__name__}: {exc}"
            ) from exc
        except BaseException:  # cancelled mid-connect: leave no half-open connection
            await asyncio.shield(session.close())
            raise
        self._session = session
        self._supervisor = asyncio.get_running_loop().create_task(
            self._supervise(session), name=f"underway-rabbitmq-{self.queue}"
        )

    async def fetch(self, demand: int) -> list[Message]:
        """Wait for deliveries, then return up to ``demand`` of them as messages.

        Safe to call concurrently, and to cancel: messages are taken from the local
        buffer only once they can be returned.
        """
        if demand < 1:
            raise ValueError(f"demand must be >= 1, got {demand!r}")
        buffer = self._buffer
        while not buffer:
            self._available.clear()
            await self._available.wait()
        if len(buffer) < demand:
            # Deliveries come in bursts: let the rest of this one arrive, so that one
            # fetch (and later one ack call) covers more messages.
            await asyncio.sleep(0)
            while not buffer:  # a concurrent fetch took them meanwhile
                self._available.clear()
                await self._available.wait()
        decoder = self.decoder
        return [_to_message(*buffer.popleft(), decoder) for _ in range(min(demand, len(buffer)))]

    async def prepare_for_draining(self) -> None:
        """Cancel the consumer and requeue the messages never handed to the pipeline."""
        async with self._lock:
            self._draining = True
            session = self._session
        if session is not None:
            await session.cancel_consumer()
        await self._requeue_buffer()

    async def close(self) -> None:
        """Stop reconnecting and close the channel and the connection."""
        self._closing = True
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
        session, self._session = self._session, None
        self._buffer.clear()
        if session is not None:
            await session.close()

    # -- deliveries --------------------------------------------------------------------

    async def _on_delivery(self, session: Session, delivered: aiormq.abc.DeliveredMessage) -> None:
        if session is not self._session or not session.alive:
            return  # a closed channel's delivery: the broker requeued it
        if self._draining:
            await session.requeue([delivered])
            return
        self._buffer.append((session, delivered))
        self._available.set()

    async def _requeue_buffer(self) -> None:
        buffered = list(self._buffer)
        self._buffer.clear()
        by_session: dict[Session, list[aiormq.abc.DeliveredMessage]] = {}
        for session, delivered in buffered:
            by_session.setdefault(session, []).append(delivered)
        for session, items in by_session.items():
            await session.requeue(items)

    # -- connection --------------------------------------------------------------------

    async def _open(self, session: Session) -> None:
        """Open ``session`` and consume, unless draining or closing began meanwhile."""
        async with asyncio.timeout(self.connect_timeout):
            await session.open()
            async with self._lock:
                if self._draining or self._closing:
                    await session.close()
                    return
                self._session = session
                await session.consume(self._on_delivery)

    async def _supervise(self, session: Session) -> None:
        while True:
            await session.wait_closed()
            if self._closing:
                return
            lost = len(self._buffer)
            self._buffer.clear()
            await session.close()  # a channel closed by the broker may leave its connection
            self.reconnects += 1
            _log.warning(
                "RabbitMQ connection to %s for queue %r lost; %d buffered message(s) left "
                "to the broker, unacknowledged ones will be redelivered; reconnecting",
                safe_url(self.url),
                self.queue,
                lost,
            )
            if self._draining:
                return
            session = await self._reconnect(session.number + 1)
            if session.stale:  # draining or closing began while reconnecting
                return

    async def _reconnect(self, number: int) -> Session:
        assert self._settings is not None
        attempts = 0
        last_error = ""
        while True:
            await asyncio.sleep(self.reconnect_interval)
            attempts += 1
            session = Session(self._settings, number)
            try:
                await self._open(session)
            except asyncio.CancelledError:
                await session.close()
                raise
            except Exception as exc:
                await session.close()
                error = f"{type(exc).__name__}: {exc}"
                level = logging.DEBUG if error == last_error else logging.WARNING
                last_error = error
                _log.log(level, "RabbitMQ reconnection attempt %d failed: %s", attempts, error)
                continue
            if session.stale:
                return session
            _log.info(
                "RabbitMQ connection to %s for queue %r restored after %d attempt(s)",
                safe_url(self.url),
                self.queue,
                attempts,
            )
            return session


def _to_message(
    session: Session,
    delivered: aiormq.abc.DeliveredMessage,
    decoder: Callable[[bytes], Any] | None,
) -> Message:
    properties = delivered.header.properties
    metadata = {
        "delivery_tag": delivered.delivery_tag,
        "redelivered": delivered.redelivered,
        "exchange": delivered.exchange,
        "routing_key": delivered.routing_key,
        "headers": properties.headers,
        "message_id": properties.message_id,
        "correlation_id": properties.correlation_id,
        "content_type": properties.content_type,
        "timestamp": properties.timestamp,
    }
    return decode_message(delivered.body, decoder, session, metadata)
