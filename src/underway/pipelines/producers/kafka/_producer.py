"""A producer that consumes Kafka topics as one member of a consumer group (extra ``kafka``).

Delivery is at least once: offsets are committed only up to the first message of each
partition not yet settled, so after a crash or a rebalance what was not committed is
read again (by this consumer or the partition's next owner).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from underway.errors import ConfigError
from underway.pipelines.message import Message
from underway.pipelines.producers.kafka import _options as opt
from underway.pipelines.producers.kafka._acks import (
    ON_FAILURE,
    Delivery,
    KafkaAcknowledger,
    OnFailure,
)
from underway.pipelines.producers.kafka._committer import Committer
from underway.pipelines.producers.kafka._dead_letters import DeadLetters
from underway.pipelines.producers.kafka._message import kafka_messages
from underway.pipelines.producers.kafka._offsets import OffsetTracker
from underway.pipelines.producers.kafka._outage import Outage
from underway.pipelines.producers.kafka._partitions import Partitions
from underway.pipelines.producers.kafka._rebalance import Rebalance

__all__ = ["KafkaProducer"]

_log = logging.getLogger("underway.pipelines.kafka")

_POLL_MS = 500  # one getmany waits at most this long before looking again
_CLOSE_BOUND = 10.0  # seconds close() gives dead letters under way


class KafkaProducer:
    """Reads Kafka topics as one member of a consumer group (aiokafka).

    The pipeline's demand is the most records one ``getmany`` returns. While the pipeline
    is full, every partition is paused: aiokafka keeps heartbeating in the background
    (and the producer keeps polling the paused consumer), so a slow handler stops the
    fetching without leaving the group, and the client buffers at most one fetch
    (``max_partition_fetch_bytes``) per partition.

    Each message's ``ordering_key`` is ``(topic, partition)``: without a ``partition_by``
    of its own, the pipeline handles a partition's messages one at a time, in order.
    ``metadata`` holds ``topic``, ``partition``, ``offset``, ``key``, ``headers`` (a list of
    ``(str, bytes)``), ``timestamp`` (ms) and ``generation`` (the assignment it came from).

    Offsets are committed by a committer task every ``commit_interval`` seconds, or once
    ``commit_batch`` messages were settled, and at :meth:`close`: per partition, up to the
    first message not yet settled (never past one in flight, or failed and not settled).
    On a rebalance, revoked partitions stop being fetched, their messages in flight get
    ``revoke_timeout`` seconds, what is contiguous is committed, and later settlements
    of their messages are dropped (the partition's next owner reads them again).

    A failed message is settled per ``message.ack_options["on_failure"]`` (set with
    ``message.configure_ack``) or else the producer's ``on_failure``:

    - ``"ack"``: committed past, like a success (logged by the pipeline only);
    - ``"dead_letter"``: published to the dead-letter topic (same key, value and headers,
      plus ``underway.origin_topic``, ``underway.origin_partition``,
      ``underway.origin_offset``, ``underway.group`` and ``underway.reason``), then committed
      past; while the broker cannot take it, it is retried and nothing past it is committed;
    - ``"stop"``: the partition is paused until this consumer loses it, nothing past the
      message is committed, and an error is logged; its next owner reads it again.

    aiokafka reconnects by itself; a lost broker shows in commits (and dead letters)
    failing, which are retried: the outage is logged once when it starts and once when it
    ends.

    Args:
        topics: The topic, or topics, to consume.
        group_id: The consumer group.
        bootstrap_servers: ``"host:port"`` (comma-separated for several) or a list.
        decoder: Turns a record's value (``bytes``) into the message's data; when it
            raises, the message fails with a ``DecodeError`` and carries the raw value.
            Default: the raw ``bytes``. A tombstone's data is ``None``, never decoded.
        on_failure: How failed messages are settled unless they say otherwise.
        dead_letter_topic: Where dead letters go: a topic for all, default
            ``f"{topic}.dead"`` for each origin topic; ``False``: none
            (``on_failure="dead_letter"`` is then invalid). With ``on_failure="dead_letter"``
            the dead-letter topics must exist at start; with another ``on_failure``, a
            message's ``configure_ack(on_failure="dead_letter")`` raises ``ConfigError``
            if they did not.
        auto_offset_reset: Where a partition without a committed offset starts.
        commit_interval: Seconds between commits (at most half of ``max_poll_interval_ms``).
        commit_batch: Settled messages that trigger a commit sooner.
        revoke_timeout: Seconds a rebalance waits for messages of revoked partitions.
        connect_timeout: Seconds the start may take (connecting, checking the topics);
            joining the group happens in the first fetches. Also the bound of one commit.
        retry_interval: Seconds between attempts while the broker is lost.
        session_timeout_ms: The group's session timeout.
        heartbeat_interval_ms: Interval of aiokafka's background heartbeats.
        max_poll_interval_ms: Passed to aiokafka; while the pipeline is full the producer
            still polls the paused consumer, every third of it (at most every 30 s).
        max_partition_fetch_bytes: The most one fetch brings per partition (the client's
            buffer per partition); Kafka's default, 1 MiB.
        fetch_max_bytes: The most one fetch brings in all; Kafka's default, 50 MiB.
        consumer_options: Further ``AIOKafkaConsumer`` options (``client_id``,
            ``security_protocol``, ``sasl_*``...); those above cannot be set here. The
            dead-letter producer gets the connection options among them.

    Raises:
        ConfigError: An option is invalid.
    """

    def __init__(
        self,
        topics: str | Sequence[str],
        group_id: str,
        *,
        bootstrap_servers: str | Sequence[str] = "127.0.0.1:9092",
        decoder: Callable[[bytes], Any] | None = None,
        on_failure: OnFailure = "dead_letter",
        dead_letter_topic: str | Literal[False] | None = None,
        auto_offset_reset: Literal["earliest", "latest"] = "earliest",
        commit_interval: float = 1.0,
        commit_batch: int = 1000,
        revoke_timeout: float = 10.0,
        connect_timeout: float = 10.0,
        retry_interval: float = 1.0,
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 3_000,
        max_poll_interval_ms: int = 300_000,
        max_partition_fetch_bytes: int = 1024 * 1024,
        fetch_max_bytes: int = 50 * 1024 * 1024,
        consumer_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.topics = opt.names("topics", topics)
        self.group_id = opt.name("group_id", group_id)
        self.bootstrap_servers = opt.servers(bootstrap_servers)
        self._decoder = opt.callable_or_none("decoder", decoder)
        if on_failure not in ON_FAILURE:
            raise ConfigError(
                f"KafkaProducer: on_failure must be one of {ON_FAILURE}, got {on_failure!r}"
            )
        self.on_failure: OnFailure = on_failure
        if dead_letter_topic is not None and dead_letter_topic is not False:
            dead_letter_topic = opt.name("dead_letter_topic", dead_letter_topic)
            if dead_letter_topic in self.topics:
                raise ConfigError("KafkaProducer: dead_letter_topic must not be a consumed topic")
        self.dead_letter_topic = dead_letter_topic
        if on_failure == "dead_letter" and dead_letter_topic is False:
            raise ConfigError(
                "KafkaProducer: on_failure='dead_letter' needs a dead-letter topic "
                "(dead_letter_topic=False disables it)"
            )
        if auto_offset_reset not in ("earliest", "latest"):
            raise ConfigError(
                f"KafkaProducer: auto_offset_reset must be 'earliest' or 'latest', "
                f"got {auto_offset_reset!r}"
            )
        self.commit_interval = opt.positive("commit_interval", commit_interval)
        poll_ms = opt.positive_int("max_poll_interval_ms", max_poll_interval_ms)
        if self.commit_interval * 1000 * 2 > poll_ms:
            # A full pipeline's paused consumer is polled on the committer's ticks: they
            # must come well within max_poll_interval, or the consumer leaves its group.
            raise ConfigError(
                f"KafkaProducer: commit_interval ({self.commit_interval:g}s) must be at most "
                f"half of max_poll_interval_ms ({poll_ms} ms)"
            )
        self.commit_batch = opt.positive_int("commit_batch", commit_batch)
        self.revoke_timeout = opt.positive("revoke_timeout", revoke_timeout)
        self.connect_timeout = opt.positive("connect_timeout", connect_timeout)
        self.retry_interval = opt.positive("retry_interval", retry_interval)
        session = opt.positive_int("session_timeout_ms", session_timeout_ms)
        heartbeat = opt.positive_int("heartbeat_interval_ms", heartbeat_interval_ms)
        if heartbeat >= session:
            raise ConfigError("KafkaProducer: heartbeat_interval_ms must be < session_timeout_ms")
        self._consumer_kwargs: dict[str, Any] = {
            **opt.consumer_options(consumer_options),
            "bootstrap_servers": self.bootstrap_servers,
            "group_id": self.group_id,
            "enable_auto_commit": False,
            "auto_offset_reset": auto_offset_reset,
            "session_timeout_ms": session,
            "heartbeat_interval_ms": heartbeat,
            "max_poll_interval_ms": opt.positive_int("max_poll_interval_ms", max_poll_interval_ms),
            "rebalance_timeout_ms": max(session, int(self.revoke_timeout * 1000) + 5_000),
            "max_partition_fetch_bytes": opt.positive_int(
                "max_partition_fetch_bytes", max_partition_fetch_bytes
            ),
            "fetch_max_bytes": opt.positive_int("fetch_max_bytes", fetch_max_bytes),
        }
        servers = self.bootstrap_servers
        self._servers = servers if isinstance(servers, str) else ",".join(servers)
        self._outage = Outage(self._servers)
        self._tracker: OffsetTracker[TopicPartition] = OffsetTracker()
        self._consumer: AIOKafkaConsumer[Any, Any] | None = None
        self._dlq_producer: AIOKafkaProducer[Any, Any] | None = None
        self._dead_letters: DeadLetters | None = None
        # A paused consumer is polled this long after the last fetch, well within its
        # max_poll_interval (aiokafka leaves the group of a consumer that stops polling).
        self._partitions = Partitions(idle_poll=min(30.0, max_poll_interval_ms / 3000))
        self._fetch_failed = False
        self._capacity = 1
        self._draining = False
        self._closing = False
        self._committer = Committer(
            self._tracker,
            self._commit,
            self._partitions.assignment,
            self._outage,
            interval=self.commit_interval,
            batch=self.commit_batch,
            timeout=max(5.0, self.connect_timeout),
            tick=self._partitions.keep_polling,
        )
        self._acks = KafkaAcknowledger(
            tracker=self._tracker,
            on_failure=on_failure,
            dead_letter=dead_letter_topic is not False,
            publish=self._publish,
            stop_partition=self._partitions.stop,
            settled=self._committer.settled,
            owner=repr(self),
        )

    def __repr__(self) -> str:
        return f"<KafkaProducer topics={list(self.topics)!r} group_id={self.group_id!r}>"

    @property
    def in_flight(self) -> int:
        """Messages handed to the pipeline and neither settled nor stopped."""
        return self._tracker.in_flight()

    @property
    def buffered_bytes(self) -> int:
        """Bytes of fetched records aiokafka holds, not yet handed out (its prefetch).

        Read from aiokafka's fetcher (0 if a later aiokafka stores them differently). At
        most one fetch per partition: ``max_partition_fetch_bytes``, or one record batch
        when a batch is larger.
        """
        fetcher = getattr(self._consumer, "_fetcher", None)
        results = getattr(fetcher, "_records", None) or {}
        total = 0
        for result in list(results.values()):
            partition_records = getattr(result, "_partition_records", None)
            memory = getattr(partition_records, "_records", None)
            size = getattr(memory, "size_in_bytes", None)
            if callable(size):
                total += int(size())
        return total

    def dead_letter_topic_for(self, topic: str) -> str:
        """The dead-letter topic of messages from ``topic``."""
        if isinstance(self.dead_letter_topic, str):
            return self.dead_letter_topic
        return f"{topic}.dead"

    # -- lifecycle -------------------------------------------------------------------

    async def prepare_for_start(self, capacity: int) -> None:
        """Connect, check the topics, start the dead-letter producer, join the group.

        Raises:
            ConnectionError: No broker answered within ``connect_timeout``.
            ConfigError: A consumed topic (or, with ``on_failure="dead_letter"``, a
                dead-letter topic) does not exist.
        """
        self._capacity = max(1, capacity)
        self._draining = self._closing = False
        try:
            async with asyncio.timeout(self.connect_timeout):
                await self._connect()
        except (KafkaError, TimeoutError, OSError) as exc:
            await self.close()
            raise ConnectionError(
                f"cannot connect to Kafka at {self._servers} within "
                f"{self.connect_timeout:g}s: {type(exc).__name__}: {exc}"
            ) from exc
        except BaseException:
            await self.close()
            raise
        self._committer.start(f"underway.kafka[{self.group_id}].committer")

    async def _connect(self) -> None:
        consumer = AIOKafkaConsumer(**self._consumer_kwargs)
        self._consumer = self._partitions.consumer = consumer
        await consumer.start()
        existing = await consumer.topics()
        missing = [t for t in self.topics if t not in existing]
        if missing:
            raise ConfigError(f"Kafka topic(s) {missing} do not exist at {self._servers}")
        self._acks.missing_dead_letter_topics = []
        if self.dead_letter_topic is not False:
            dead = sorted({self.dead_letter_topic_for(t) for t in self.topics} - existing)
            if dead and self.on_failure == "dead_letter":
                raise ConfigError(
                    f"dead-letter topic(s) {dead} do not exist at {self._servers} (create "
                    f"them, or choose another on_failure or dead_letter_topic)"
                )
            # A broker that does not create topics would never take a dead letter: a
            # message's on_failure="dead_letter" is refused at configure_ack.
            self._acks.missing_dead_letter_topics = dead
            await self._start_dead_letters()
        consumer.subscribe(list(self.topics), listener=self._listener())

    async def _start_dead_letters(self) -> None:
        extra = {
            k: v
            for k, v in self._consumer_kwargs.items()
            if k == "client_id" or k.startswith(("security_", "sasl_", "ssl_"))
        }
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers, **extra)
        self._dlq_producer = producer
        await producer.start()
        self._dead_letters = DeadLetters(
            producer,
            self.dead_letter_topic_for,
            self.group_id,
            self._dead_lettered,
            self._outage,
            self.retry_interval,
        )

    def _listener(self) -> Rebalance:
        return Rebalance(
            self._tracker,
            revoking=self._partitions.revoked,
            commit=self._committer.commit,
            forget=self._forget,
            assigned=self._on_assigned,
            revoke_timeout=self.revoke_timeout,
            closing=lambda: self._closing,
        )

    async def prepare_for_draining(self) -> None:
        """Stop fetching: every partition is paused and nothing more is handed out."""
        self._draining = True
        self._partitions.pause(self._partitions.assignment())

    async def close(self) -> None:
        """Publish pending dead letters (bounded), commit what is settled, leave the group."""
        self._draining = True
        await self._committer.stop()
        if self._dead_letters is not None:
            await self._dead_letters.close(_CLOSE_BOUND)
        if self._consumer is not None and self._consumer.assignment():
            await self._committer.commit()
        self._closing = True
        consumer, self._consumer = self._consumer, None
        self._partitions.consumer = None
        producer, self._dlq_producer = self._dlq_producer, None
        self._dead_letters = None
        for client in (consumer, producer):
            if client is not None:
                try:
                    async with asyncio.timeout(self.connect_timeout):
                        await client.stop()  # the consumer leaves the group
                except (KafkaError, TimeoutError) as exc:
                    _log.warning("%r: closing a Kafka client failed: %r", self, exc)
        self._tracker.revoke(self._tracker.partitions)
        self._partitions.reset()

    # -- fetching --------------------------------------------------------------------

    async def fetch(self, demand: int) -> list[Message]:
        """Return between 1 and ``demand`` messages, waiting for them.

        Once draining, waits until cancelled.
        """
        demand = max(1, demand)
        while True:
            consumer = self._consumer
            if self._draining or consumer is None:
                await asyncio.get_running_loop().create_future()
                continue
            async with self._partitions.lock:
                self._partitions.resume()
                try:
                    batch = await consumer.getmany(timeout_ms=_POLL_MS, max_records=demand)
                except KafkaError as exc:  # aiokafka retries lost connections itself
                    self._outage.failed("fetching", exc)
                    self._fetch_failed = True
                    batch = {}
                    await asyncio.sleep(self.retry_interval)
                else:
                    if self._fetch_failed:  # only a fetch error is ended by a fetch
                        self._fetch_failed = False
                        self._outage.recovered()
                self._partitions.last_poll = time.monotonic()
                messages = self._admit(consumer, batch)
                if self._tracker.in_flight() >= self._capacity:
                    self._partitions.pause(self._partitions.assignment())
            if messages:
                return messages

    def _admit(
        self,
        consumer: AIOKafkaConsumer[Any, Any],
        batch: dict[TopicPartition, list[ConsumerRecord[Any, Any]]],
    ) -> list[Message]:
        messages: list[Message] = []
        for tp, records in batch.items():
            state = self._tracker.get(tp)
            if not records:
                continue
            if state is None or self._partitions.held_back(tp) or self._draining:
                if state is not None:  # kept: read them again later
                    consumer.seek(tp, records[0].offset)
                continue
            messages += kafka_messages(records, state, self._acks, self._decoder)
        return messages

    # -- partitions ------------------------------------------------------------------

    def _forget(self, partitions: set[TopicPartition]) -> None:
        self._partitions.forget(partitions)

    def _on_assigned(self, partitions: set[TopicPartition]) -> None:
        self._outage.recovered()  # the group coordinator answered
        self._partitions.assigned(partitions, self._draining)

    # -- settling --------------------------------------------------------------------

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        consumer = self._consumer
        if consumer is not None:
            await consumer.commit(offsets)

    def _publish(self, deliveries: list[Delivery]) -> None:
        if self._dead_letters is None:
            _log.error(
                "%r: %d dead letter(s) arrived after close; they are read again",
                self,
                len(deliveries),
            )
            return
        self._dead_letters.publish(deliveries)

    def _dead_lettered(self, deliveries: list[Delivery]) -> None:
        count = sum(self._acks.settle((d.tp, d.generation, d.record.offset)) for d in deliveries)
        if count:
            self._committer.settled(count)
