"""A producer that pulls from a JetStream durable consumer (extra ``underway[nats]``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NATSError
from nats.errors import NoRespondersError
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.client import JetStreamContext
from nats.js.errors import APIError, NotFoundError, ServiceUnavailableError

from underway.errors import ConfigError
from underway.pipelines.message import Message, decode_message
from underway.pipelines.producers.nats._acks import NATSAcknowledger
from underway.pipelines.producers.nats._connection import Connection, redact
from underway.pipelines.producers.nats._options import Options, validate
from underway.pipelines.producers.nats._policy import (
    OnFailure,
    consumer_mismatches,
    pending_limit,
    pull_problems,
    retry_delay,
)
from underway.pipelines.producers.nats._pull import Pulls, remaining

__all__ = ["NATSProducer"]

_log = logging.getLogger("underway.pipelines.nats")

_FETCH_BACKOFF = (0.1, 5.0)  # seconds between fetches that fail with an error
_CHECK_INTERVAL = 5.0  # while pulls find nothing, seconds between checks that the consumer exists
_CLOSE_BOUND = 5.0


class NATSProducer:
    """Pulls messages from a JetStream stream through a durable pull consumer.

    At start the producer connects (retrying within ``connect_timeout``), checks that the
    stream exists, and creates the durable consumer ``durable`` when it is missing (explicit
    acks, ``ack_wait``, the ``subject`` filter, no delivery limit on the server) or binds to
    it when it exists; an existing consumer whose settings differ is a
    :class:`~underway.errors.ConfigError` naming them. Each ``fetch`` pulls at most
    ``min(demand, batch)`` messages, waiting up to ``fetch_timeout`` per pull and pulling
    again while there are none, so the broker never has more messages out to this producer
    than the pipeline asked for.

    Successful messages are acknowledged (``+ACK``: all of a group sent at once, the last one
    as a request whose answer confirms the whole group, so one round trip per group). A failed
    message is settled per ``message.configure_ack(on_failure=..., delay=...)`` or else the
    producer's ``on_failure``:

    - ``"retry"``: nak'd with a delay, ``base * 2 ** (num_delivered - 1)`` capped at
      ``max`` (``backoff=(base, max)``, or the message's ``delay``), and delivered again
      once the delay has passed (the server holds it meanwhile);
    - ``"term"``: terminated (``+TERM``): never delivered again;
    - ``"dead_letter"``: published to ``dead_letter_subject`` (with its headers and
      ``Underway-Origin-Stream``, ``-Subject``, ``-Sequence``, ``-Consumer``,
      ``Underway-Deliveries`` and ``Underway-Reason``), then terminated;
    - ``"ack"``: acknowledged, so dropped.

    A retry on the ``max_deliveries``-th delivery is dead-lettered instead (terminated
    without a ``dead_letter_subject``); so is a message delivered more often than that (its
    handler died, or its ``ack_wait`` ran out), before it reaches the pipeline. That is why
    the consumer has no delivery limit on the server (``max_deliver=-1``): a server limit
    would leave such a message unacknowledged in the stream, neither delivered nor
    dead-lettered. A pull consumer delivers only to pulls, so nothing is redelivered while
    no producer runs; another client pulling from the same consumer is not held to
    ``max_deliveries``. While the
    pipeline still holds a message, the producer tells the server every ``ack_wait / 2``
    seconds that it is in progress (``+WPI``), so a slow handler does not cause a
    redelivery.

    Messages carry ``metadata``: ``subject``, ``stream``, ``consumer``, ``stream_seq``,
    ``consumer_seq``, ``num_delivered`` (1 on the first delivery), ``num_pending``,
    ``timestamp`` (a ``datetime``) and ``headers`` (a ``dict``). ``data`` is the payload
    (``bytes``), or ``decoder(payload)``; a payload the decoder rejects fails its message
    with :class:`~underway.errors.DecodeError`.

    Once connected, nats-py reconnects by itself after a lost connection; the outage is
    logged once when it starts and once when it ends, a fetch that fails is retried with
    a backoff, and acknowledgements made meanwhile are buffered and sent on reconnection
    (JetStream acks stay valid across reconnections; one the server has not confirmed
    within ``request_timeout`` is logged, and its message may come again). While pulls find
    nothing, the producer checks every few seconds that its consumer still exists (a pull
    for a deleted consumer gets no answer): with ``create_consumer`` it creates it again,
    which delivers the stream from its start, else it logs an error once and keeps
    checking. Messages pulled but not handed out when the pipeline drains (including those
    a pull under way still brings) and messages still held at :meth:`close` are nak'd at
    close, so they come again at once (each such delivery counts in ``num_delivered``).

    Args:
        stream: The JetStream stream (must exist).
        durable: The durable consumer's name; created when missing.
        subject: The consumer's filter subject (``None``: the whole stream).
        servers: One NATS URL or several.
        batch: Most messages one pull asks for.
        fetch_timeout: Seconds one pull waits for messages.
        ack_wait: Seconds the server waits for an acknowledgement before redelivering.
        max_deliveries: Deliveries after which a failed message is dead-lettered (or
            terminated) instead of retried; ``None``: no limit.
        on_failure: How failed messages are settled unless they say otherwise.
        backoff: ``(base, max)`` seconds of the delay of a retried message.
        dead_letter_subject: Where dead-lettered messages are published (a subject of a
            stream other than the consumer's filter); ``None``: none.
        decoder: Turns a payload (``bytes``) into the message's data.
        create_consumer: Create the durable consumer when missing; else a missing one is a
            :class:`~underway.errors.ConfigError` at start.
        connect_timeout: Seconds allowed to connect at start.
        reconnect_time_wait: Seconds between reconnection attempts.
        request_timeout: Seconds allowed to a JetStream API request (stream and consumer
            info, dead-letter publications).
        connect_options: More keyword arguments for ``nats.connect`` (``tls``,
            ``user_credentials``, ``token``...).

    Raises:
        ConfigError: An option is invalid.
    """

    def __init__(
        self,
        stream: str,
        durable: str,
        *,
        subject: str | None = None,
        servers: str | Sequence[str] = "nats://127.0.0.1:4222",
        batch: int = 100,
        fetch_timeout: float = 5.0,
        ack_wait: float = 30.0,
        max_deliveries: int | None = 5,
        on_failure: OnFailure = "retry",
        backoff: tuple[float, float] = (1.0, 60.0),
        dead_letter_subject: str | None = None,
        decoder: Callable[[bytes], Any] | None = None,
        create_consumer: bool = True,
        connect_timeout: float = 10.0,
        reconnect_time_wait: float = 1.0,
        request_timeout: float = 5.0,
        connect_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.options: Options = validate(
            stream=stream,
            durable=durable,
            subject=subject,
            servers=servers,
            batch=batch,
            fetch_timeout=fetch_timeout,
            ack_wait=ack_wait,
            max_deliveries=max_deliveries,
            on_failure=on_failure,
            backoff=backoff,
            dead_letter_subject=dead_letter_subject,
            decoder=decoder,
            create_consumer=create_consumer,
            connect_timeout=connect_timeout,
            reconnect_time_wait=reconnect_time_wait,
            request_timeout=request_timeout,
            connect_options=connect_options,
        )
        self.stream = self.options.stream
        self.durable = self.options.durable
        self._acks = NATSAcknowledger(
            self.options.failure,
            repr(self),
            lease_interval=self.options.ack_wait / 2,
            timeout=self.options.request_timeout,
        )
        self._connection: Connection | None = None
        self._pulls: Pulls | None = None
        self._buffer: deque[Msg] = deque()
        self._background: set[asyncio.Task[Any]] = set()
        self._errors = 0
        self._retry_at = 0.0
        self._capacity = 0  # the pipeline's, once started
        self._draining = False
        self._checked = 0.0
        self._missing = False

    def __repr__(self) -> str:
        return f"<NATSProducer stream={self.stream!r} durable={self.durable!r}>"

    @property
    def held(self) -> int:
        """Messages handed to the pipeline and not yet settled."""
        return len(self._acks.held)

    # -- lifecycle -------------------------------------------------------------------

    async def prepare_for_start(self, capacity: int) -> None:
        """Connect, check the stream, create or bind the durable consumer.

        Each pull asks for no more than the demand; a consumer whose ``max_ack_pending``
        is below ``capacity`` is logged as a warning (the pipeline holds no more than it).

        Raises:
            ConnectionError: No server answered within ``connect_timeout``, or the
                credentials were refused.
            ConfigError: The stream is missing, JetStream is not enabled, the consumer is
                missing (without ``create_consumer``) or differs from the producer's
                settings, or the server refused the consumer.
        """
        if self._connection is not None:
            raise RuntimeError(f"{self!r} is already started")
        opts = self.options
        self._draining = False
        self._errors = 0
        self._retry_at = 0.0
        self._capacity = capacity
        connection = Connection(
            opts.servers,
            name=f"underway-{self.durable}-{socket.gethostname()}-{os.getpid()}",
            connect_timeout=opts.connect_timeout,
            reconnect_time_wait=opts.reconnect_time_wait,
            options=opts.connect_options,
        )
        self._connection = connection
        try:
            client = await connection.open()
            js = client.jetstream(timeout=opts.request_timeout)
            await self._check_stream(js)
            await self._ensure_consumer(js, client)
            pulls = Pulls(
                client,
                self.stream,
                self.durable,
                expires=opts.fetch_timeout,
                deliver=self._on_delivery,
            )
            await pulls.start()
            self._pulls = pulls
        except BaseException:
            await self.close()
            raise
        self._acks.client, self._acks.js = client, js
        self._acks.outage = connection.outage
        self._acks.leases.start()

    def _where(self) -> str:
        return redact(self.options.servers)

    async def _check_stream(self, js: JetStreamContext) -> None:
        try:
            await js.stream_info(self.stream)
        except NotFoundError as exc:
            raise ConfigError(
                f"NATS stream {self.stream!r} does not exist at {self._where()}"
            ) from exc
        except (ServiceUnavailableError, NoRespondersError) as exc:
            raise ConfigError(f"JetStream is not enabled on NATS at {self._where()}") from exc
        except APIError as exc:
            raise ConfigError(f"NATS stream {self.stream!r}: {exc}") from exc
        except TimeoutError as exc:
            raise ConnectionError(
                f"NATS at {self._where()} did not answer about stream {self.stream!r}"
            ) from exc

    def _consumer_config(self) -> ConsumerConfig:
        opts = self.options
        return ConsumerConfig(
            durable_name=self.durable,
            name=self.durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=opts.ack_wait,
            max_deliver=-1,
            filter_subject=opts.subject,
        )

    async def _ensure_consumer(self, js: JetStreamContext, client: Client) -> None:
        opts = self.options
        name = f"NATS consumer {self.durable!r} of stream {self.stream!r}"
        try:
            info = await js.consumer_info(self.stream, self.durable)
        except NotFoundError:
            if not opts.create_consumer:
                raise ConfigError(
                    f"{name} does not exist (create it, or pass create_consumer=True)"
                ) from None
            info = None
        except APIError as exc:
            raise ConfigError(f"{name}: {exc}") from exc
        if info is None:
            try:
                await js.add_consumer(self.stream, config=self._consumer_config())
            except APIError as exc:
                raise ConfigError(f"{name} could not be created: {exc}") from exc
            problems = await self._pull_problems(client, name)
            if problems:
                raise ConfigError(
                    f"{name} was created with limits of the server the producer cannot work "
                    f"with: {'; '.join(problems)}"
                )
            return
        config = info.config
        wanted = {
            "ack_policy": AckPolicy.EXPLICIT,
            "ack_wait": opts.ack_wait,
            "filter_subject": opts.subject,
            "filter_subjects": None,
            "deliver_subject": None,
        }
        actual = {
            "ack_policy": config.ack_policy,
            "ack_wait": config.ack_wait,
            "filter_subject": config.filter_subject,
            "filter_subjects": config.filter_subjects,
            "deliver_subject": config.deliver_subject,
            "max_deliver": config.max_deliver,
        }
        problems = consumer_mismatches(wanted, actual, opts.failure.max_deliveries)
        problems += await self._pull_problems(client, name)
        if problems:
            raise ConfigError(f"{name} exists with other settings: {'; '.join(problems)}")

    async def _pull_problems(self, client: Client, name: str) -> list[str]:
        """The consumer's settings that would refuse the producer's pulls or strip payloads.

        nats-py's consumer info leaves out the pull limits: the JetStream API is asked.
        """
        opts = self.options
        subject = f"$JS.API.CONSUMER.INFO.{self.stream}.{self.durable}"
        try:
            reply = await client.request(subject, b"", timeout=opts.request_timeout)
        except TimeoutError as exc:
            raise ConnectionError(f"NATS at {self._where()} did not answer about {name}") from exc
        answer = json.loads(reply.data)
        if "error" in answer:
            raise ConfigError(f"{name}: {answer['error'].get('description', answer['error'])}")
        config = answer.get("config") or {}
        limited = pending_limit(config, self._capacity)
        if limited is not None:
            _log.warning("%s: %s %s", self, name, limited)
        return pull_problems(config, opts.batch, opts.fetch_timeout)

    async def prepare_for_draining(self) -> None:
        """Stop pulling: no more messages are handed out.

        Messages pulled and not handed out, and those a pull under way still brings, are
        given back at :meth:`close` (not now: the server would deliver them again at once
        to that pull, and again, each time counting a delivery).
        """
        self._draining = True

    async def close(self) -> None:
        """Stop pulling, nak what is buffered or still held, unsubscribe and disconnect.

        The pulls' inbox is closed first: every message the server sent to it before it
        knew is read, and given back with the others. Messages still held (their handling
        was cut short) are nak'd too: they come again at once. Late acknowledgements of
        them are not sent.
        """
        self._draining = True
        pulls, self._pulls = self._pulls, None
        if pulls is not None:
            await pulls.stop(_CLOSE_BOUND)
            await self._forget_pull()
        await self._acks.leases.stop()
        left = list(self._buffer) + self._acks.release_all()
        self._buffer.clear()
        self._give_back(left)
        if self._background:
            await asyncio.wait(set(self._background), timeout=_CLOSE_BOUND)
        connection, self._connection = self._connection, None
        self._acks.client = self._acks.js = None
        if connection is not None:
            await connection.close()  # flushes the naks written above

    async def _forget_pull(self) -> None:
        """Have the server drop the pull of the closed inbox before anything is nak'd.

        The server drops a pull whose inbox is gone when it next looks at its waiting
        pulls: asking for the consumer's info makes it look now. Were a nak'd message
        offered to that pull first, some servers (2.9) lose track of it until ``ack_wait``
        runs out.
        """
        js = self._acks.js
        if js is None or self._acks.client is None or not self._acks.client.is_connected:
            return
        try:
            await js.consumer_info(self.stream, self.durable, timeout=self.options.request_timeout)
        except (NATSError, OSError, TimeoutError) as exc:
            _log.debug("%s: asking for the consumer's info at close failed: %r", self, exc)

    # -- fetching --------------------------------------------------------------------

    async def fetch(self, demand: int) -> list[Message]:
        """Return between 1 and ``demand`` messages, pulling while there are none.

        Safe to call concurrently and to cancel: every delivery lands in the producer's
        buffer; one pull is under way at a time, for no more than ``min(demand, batch)``
        less what the buffer holds.
        """
        size = max(1, min(demand, self.options.batch))
        while True:
            if self._draining:
                await asyncio.get_running_loop().create_future()
            if self._buffer:
                return self._hand_out(size)
            pulls = self._pulls
            if pulls is None:
                await asyncio.sleep(_FETCH_BACKOFF[0])
                continue
            changed = pulls.changed
            await self._pull(pulls, size)
            if self._buffer or self._draining:
                continue
            retry = max(0.0, self._retry_at - time.monotonic())
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
            # cancellation that comes as the event is set, and the caller never stops.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining(pulls.deadline, retry)):
                    await changed.wait()
            pulls.expire()
            await self._after_pull(pulls)

    async def _pull(self, pulls: Pulls, size: int) -> None:
        """Unless a pull is under way, ask for what ``size`` leaves once the buffer is counted."""
        wanted = size - len(self._buffer)
        if pulls.under_way or wanted <= 0 or time.monotonic() < self._retry_at:
            return
        if not pulls.client.is_connected:
            # Reconnecting (the client logs that outage): a pull sent now would be sent
            # on reconnection, long after its caller gave up on it.
            self._retry_at = time.monotonic() + _FETCH_BACKOFF[0]
            return
        try:
            await pulls.request(wanted)
        except NATSError as exc:
            self._failed(f"pulling from consumer {self.durable!r}", exc)

    async def _after_pull(self, pulls: Pulls) -> None:
        """Tell a refused pull (as an outage); check the consumer after unanswered ones."""
        refused, pulls.refused = pulls.refused, None
        if refused is not None:
            self._failed(f"consumer {self.durable!r} refused a pull ({refused})")
        if pulls.unanswered or refused is not None:
            pulls.unanswered = False
            # No connection (the client logs that outage), or the consumer was deleted on
            # the server: a pull for a missing consumer is refused or gets no answer at
            # all, so look for it now and then.
            if time.monotonic() - self._checked >= _CHECK_INTERVAL:
                await self._check_consumer()

    def _failed(self, doing: str, exc: BaseException | None = None) -> None:
        self._errors += 1
        self._retry_at = time.monotonic() + retry_delay(self._errors, _FETCH_BACKOFF)
        connection = self._connection
        if connection is not None:
            connection.outage.failed(doing, exc)

    def _on_delivery(self, msg: Msg) -> None:
        """Take one message a pull brought: bury it if delivered too often, else buffer it.

        Buffered messages are handed out by :meth:`fetch`, or given back at :meth:`close`
        once the pipeline drains.
        """
        if self._errors:
            self._errors = 0
            self._retry_at = 0.0
            if self._connection is not None:
                self._connection.outage.recovered()
        limit = self.options.failure.max_deliveries
        if not self._draining and limit is not None and msg.metadata.num_delivered > limit:
            self._bury([msg])
            return
        self._buffer.append(msg)

    def _hand_out(self, size: int) -> list[Message]:
        decoder = self.options.decoder
        messages: list[Message] = []
        while self._buffer and len(messages) < size:
            msg = self._buffer.popleft()
            message = decode_message(msg.data, decoder, self._acks, _metadata(msg))
            self._acks.hold(message, msg)
            messages.append(message)
        return messages

    async def _check_consumer(self) -> None:
        """Create the consumer again if the server lost it (else log that it is missing)."""
        self._checked = time.monotonic()
        js = self._acks.js
        if js is None:
            return
        name = f"consumer {self.durable!r} of stream {self.stream!r}"
        try:
            await js.consumer_info(self.stream, self.durable)
        except NotFoundError as missing:
            cause: BaseException = missing
            if self.options.create_consumer:
                try:
                    await js.add_consumer(self.stream, config=self._consumer_config())
                except (NATSError, OSError) as error:
                    cause = error
                else:
                    _log.warning("%s: %s was missing on the server: created again", self, name)
                    self._missing = False
                    return
            if not self._missing:
                self._missing = True
                _log.error("%s: %s is missing on the server (%s); retrying", self, name, cause)
            return
        except (NATSError, OSError, TimeoutError) as exc:
            _log.debug("%s: checking %s failed: %r", self, name, exc)
            return
        if self._missing:
            self._missing = False
            _log.info("%s: %s exists again", self, name)

    def _bury(self, msgs: list[Msg]) -> None:
        """Settle messages delivered past ``max_deliveries`` without handing them out."""
        limit = self.options.failure.max_deliveries
        failed: list[Message] = []
        for msg in msgs:
            message = Message(data=msg.data, metadata=_metadata(msg), acknowledger=self._acks)
            message.failed(
                f"delivered {msg.metadata.num_delivered} times, max_deliveries is {limit}"
            )
            message.ack_options = {"on_failure": "retry"}  # past the limit: dead-letter or term
            self._acks.hold(message, msg)
            failed.append(message)
        self._spawn(self._acks.ack((), failed))

    def _give_back(self, msgs: list[Msg]) -> None:
        """Nak messages nobody will handle, so that they come again at once."""
        if msgs:
            self._spawn(self._nak(msgs))

    async def _nak(self, msgs: list[Msg]) -> None:
        connection = self._connection
        client: Client | None = None if connection is None else connection.client
        try:
            for msg in msgs:
                await msg.nak()
            if client is not None and not client.is_closed:
                await client.flush(timeout=_CLOSE_BOUND)  # type: ignore[arg-type]
        except (TimeoutError, NATSError) as exc:
            _log.debug("%s: giving back %d message(s) failed: %r", self, len(msgs), exc)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=f"underway-nats-{self.durable}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _metadata(msg: Msg) -> dict[str, Any]:
    meta = msg.metadata
    return {
        "subject": msg.subject,
        "stream": meta.stream,
        "consumer": meta.consumer,
        "stream_seq": meta.sequence.stream,
        "consumer_seq": meta.sequence.consumer,
        "num_delivered": meta.num_delivered,
        "num_pending": meta.num_pending,
        "timestamp": meta.timestamp,
        "headers": dict(msg.headers or {}),
    }
