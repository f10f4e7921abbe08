"""A producer that consumes a Redis stream through a consumer group (extra ``underway[redis]``).

Delivery is at least once. An entry handed to the pipeline stays in the group's pending
entries list (PEL) until the pipeline acknowledges it; entries left pending by a consumer
that died, or failed with ``on_failure="retry"``, are reclaimed with ``XAUTOCLAIM`` once idle
for ``claim_idle`` seconds, and after ``max_deliveries`` deliveries go to a dead-letter stream.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from underway.errors import ConfigError
from underway.pipelines.message import Message, decode_message
from underway.pipelines.producers.redis_streams._acks import (
    ON_FAILURE,
    OnFailure,
    SettlePolicy,
    StreamAcknowledger,
)
from underway.pipelines.producers.redis_streams._claim import Reclaimer
from underway.pipelines.producers.redis_streams._ops import (
    CONNECTION_ERRORS,
    GIVE_BACK_IDLE_MS,
    Entry,
    Outage,
    StreamOps,
    is_nogroup,
    redact,
    text_fields,
)
from underway.pipelines.producers.redis_streams._tasks import CommandTasks

__all__ = ["RedisStreamProducer"]

_log = logging.getLogger("underway.pipelines.redis")

_SCHEMES = ("redis", "rediss", "unix")
_CONNECT_TIMEOUT = 5.0
_CANCEL_BOUND = 2.0  # seconds close() waits for cancelled commands, before and after disconnecting


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"RedisStreamProducer: {name} must be a number > 0, got {value!r}")
    return float(value)


def _name(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"RedisStreamProducer: {name} must be a non-empty string, got {value!r}")
    return value


def _url(url: Any) -> str:
    if not isinstance(url, str) or urlsplit(url).scheme not in _SCHEMES:
        raise ConfigError(
            f"RedisStreamProducer: url must start with redis://, rediss:// or unix://, got {url!r}"
        )
    try:
        parse_url(url)
    except ValueError as exc:
        raise ConfigError(f"RedisStreamProducer: invalid url {redact(url)!r}: {exc}") from exc
    return url


class RedisStreamProducer:
    """Reads a Redis stream as one consumer of a consumer group.

    Each ``fetch`` first reclaims, with ``XAUTOCLAIM``, entries that any consumer of the
    group left pending for ``claim_idle`` seconds (a consumer that died, a failure set to
    ``"retry"``), then reads new entries with ``XREADGROUP``. Successful messages are
    acknowledged with one ``XACK`` per acknowledgement call. A failed message is settled
    per ``message.ack_options["on_failure"]`` (set with ``message.configure_ack``) or else
    the producer's ``on_failure``:

    - ``"retry"``: left pending; delivered again once idle for ``claim_idle`` seconds, which
      counts as a delivery;
    - ``"dead_letter"``: added to the dead-letter stream and acknowledged, atomically;
    - ``"ack"``: acknowledged (dropped).

    A message that failed on its ``max_deliveries``-th delivery, or is reclaimed after that
    many, goes to the dead-letter stream. A dead-lettered entry keeps its fields and gains
    ``underway.origin_id``, ``underway.origin_stream``, ``underway.group``,
    ``underway.deliveries`` and ``underway.reason`` (a field of the entry with one of these
    names is overwritten).

    Messages carry ``metadata``: ``id`` (the entry id, ``str``), ``stream`` and
    ``deliveries`` (1 on the first delivery). A message this producer holds (handed out,
    not yet acknowledged) is never handed out again by it, even if ``XAUTOCLAIM`` finds it
    idle. Entries that were read but not handed out when ``fetch`` was cancelled, or that
    arrive while draining, are given back: their delivery count is restored and they are
    marked idle, so any consumer reclaims them at once (if Redis cannot be reached then,
    they are reclaimed after ``claim_idle``). Draining wakes a blocked ``XREADGROUP`` with
    ``CLIENT UNBLOCK`` (without that permission it ends within ``block`` seconds).

    Every Redis command runs in a task of the producer, never in the caller's: redis-py
    can lose a cancellation that arrives mid-command (see ``_redis_tasks``), so a
    cancelled ``fetch`` or acknowledgement returns at once while its command finishes in
    the background. An acknowledgement whose caller was cancelled is still sent. At
    :meth:`close` such tasks are waited for, then cancelled, with bounds.

    Reconnecting is the producer's job, not the client's: the client it makes never
    retries a command itself, whatever its version's default, so that no command is sent
    twice behind the producer's back and an outage is seen, logged and paced here. (The
    client may still replace a pooled connection the server closed while it was idle,
    before sending anything on it: redis-py 8.2 always does.) A command that fails
    because its connection was lost is sent once more at once, on a new connection; if
    that fails too, Redis is unreachable: this is logged once, and reading and
    acknowledging are retried every ``reconnect_interval`` seconds (acknowledgements up to
    5 times, then the entries stay pending and are delivered again: at least once). When
    the server lost the group, it is created again from ``start_id`` (with
    ``create_group``).

    Args:
        stream: The stream's key.
        group: The consumer group.
        url: ``redis://``, ``rediss://`` or ``unix://`` URL; query options such as
            ``?socket_connect_timeout=2`` are passed to the client (keep ``socket_timeout``
            above ``block``).
        consumer: This consumer's name in the group. Default: ``host-pid-random``, unique
            per producer; such a consumer is deleted from the group at :meth:`close` when it
            holds no pending entry.
        create_group: Create the group (and the stream) when missing, at start and whenever
            the server lost it; otherwise a missing group fails the start.
        start_id: Where a created group starts: ``"0"`` (the whole stream) or ``"$"`` (new
            entries only).
        block: Seconds one ``XREADGROUP`` waits for new entries.
        claim_idle: Seconds an entry stays pending before any consumer may reclaim it. Keep
            it above the longest time a message spends in the pipeline. The pending list is
            scanned every ``claim_idle / 2`` seconds.
        max_deliveries: Deliveries after which a message is dead-lettered instead of
            delivered again; ``None``: no limit.
        dead_letter_stream: Where dead-lettered entries go. Default ``f"{stream}:dead"``;
            ``False``: none, and a message that would be dead-lettered is acknowledged and
            logged as an error instead (``on_failure="dead_letter"`` is then invalid).
        decoder: Turns an entry's fields (``dict[bytes, bytes]``) into the message's data;
            when it raises, the message fails with a ``DecodeError`` and carries the raw
            fields. Default: the fields decoded as UTF-8 (``dict[str, str]``); pass
            ``decoder=dict`` for the raw bytes.
        on_failure: How failed messages are settled unless they say otherwise.
        reconnect_interval: Seconds between attempts while Redis cannot be reached.

    Raises:
        ConfigError: An option is invalid.
    """

    def __init__(
        self,
        stream: str,
        group: str,
        *,
        url: str = "redis://127.0.0.1:6379/0",
        consumer: str | None = None,
        create_group: bool = True,
        start_id: str = "0",
        block: float = 1.0,
        claim_idle: float = 60.0,
        max_deliveries: int | None = 5,
        dead_letter_stream: str | Literal[False] | None = None,
        decoder: Callable[[dict[bytes, bytes]], Any] | None = None,
        on_failure: OnFailure = "retry",
        reconnect_interval: float = 1.0,
    ) -> None:
        self.stream = _name("stream", stream)
        self.group = _name("group", group)
        self.url = _url(url)
        self._auto_consumer = consumer is None
        self.consumer = (
            f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
            if consumer is None
            else _name("consumer", consumer)
        )
        self.create_group = bool(create_group)
        self.start_id = _name("start_id", start_id)
        self.block = _positive("block", block)
        self.claim_idle = _positive("claim_idle", claim_idle)
        self.reconnect_interval = _positive("reconnect_interval", reconnect_interval)
        if max_deliveries is not None and (
            isinstance(max_deliveries, bool)
            or not isinstance(max_deliveries, int)
            or max_deliveries < 1
        ):
            raise ConfigError(
                f"RedisStreamProducer: max_deliveries must be an int >= 1 or None, "
                f"got {max_deliveries!r}"
            )
        self.max_deliveries = max_deliveries
        self.dead_letter_stream = self._dead_letter_stream(dead_letter_stream)
        if decoder is not None and not callable(decoder):
            raise ConfigError(f"RedisStreamProducer: decoder must be callable, got {decoder!r}")
        self._decoder: Callable[[dict[bytes, bytes]], Any] = decoder or text_fields
        if on_failure not in ON_FAILURE:
            raise ConfigError(
                f"RedisStreamProducer: on_failure must be one of {ON_FAILURE}, got {on_failure!r}"
            )
        if on_failure == "dead_letter" and self.dead_letter_stream is None:
            raise ConfigError(
                "RedisStreamProducer: on_failure='dead_letter' needs a dead-letter stream "
                "(dead_letter_stream=False disables it)"
            )
        self.on_failure: OnFailure = on_failure
        self._client_name = "underway:" + re.sub(r"[^!-~]", "_", self.consumer)
        self._outage = Outage(redact(url), self.reconnect_interval)
        self._ops: StreamOps | None = None
        policy = SettlePolicy(
            self.stream,
            on_failure,
            max_deliveries,
            self.dead_letter_stream,
            self.claim_idle,
            self.reconnect_interval,
        )
        prefix = f"underway.redis[{self.stream}/{self.consumer}]"
        self._bg = CommandTasks(prefix)  # reads, give-backs, group checks
        self._ack_tasks = CommandTasks(prefix)
        self._acks = StreamAcknowledger(
            policy, self._connect, self._outage, repr(self), self._ack_tasks
        )
        self._held = self._acks.held
        self._draining = False
        self._reclaimer = Reclaimer(
            self.claim_idle, max_deliveries, self._held, self._acks.bury, repr(self)
        )

    def _dead_letter_stream(self, value: str | Literal[False] | None) -> str | None:
        if value is None:
            return f"{self.stream}:dead"
        if value is False:
            return None
        name = _name("dead_letter_stream", value)
        if name == self.stream:
            raise ConfigError("RedisStreamProducer: dead_letter_stream must differ from stream")
        return name

    def __repr__(self) -> str:
        return (
            f"<RedisStreamProducer stream={self.stream!r} group={self.group!r} "
            f"consumer={self.consumer!r}>"
        )

    @property
    def held(self) -> int:
        """Messages handed to the pipeline and not yet settled."""
        return len(self._held)

    # -- lifecycle -------------------------------------------------------------------

    def _connect(self) -> StreamOps:
        if self._ops is None:
            client = Redis.from_url(
                self.url,
                socket_timeout=max(_CONNECT_TIMEOUT, self.block + _CONNECT_TIMEOUT),
                socket_connect_timeout=_CONNECT_TIMEOUT,
                # The producer owns retries (see the class docstring): the client's own
                # default retry differs between redis-py versions (none in 5.x, ten with
                # backoff in 8.x) and would hide outages and stretch reconnect_interval.
                retry=Retry(NoBackoff(), 0),
                client_name=self._client_name,
            )
            self._ops = StreamOps(
                client, self.stream, self.group, self.consumer, self.dead_letter_stream
            )
        return self._ops

    async def prepare_for_start(self, capacity: int) -> None:
        """Connect, and create the consumer group if missing (with ``create_group``).

        ``capacity`` is not needed: each read asks for no more entries than the demand.

        Raises:
            ConnectionError: Redis cannot be reached (within about 10 seconds).
            ConfigError: The group does not exist and ``create_group`` is false, or the
                key holds something other than a stream.
        """
        self._draining = self._acks.closed = False
        try:
            async with asyncio.timeout(2 * _CONNECT_TIMEOUT):
                await self._bg.run(self._check_group(self._connect()), "start")
        except (*CONNECTION_ERRORS, TimeoutError) as exc:
            await self.close()
            raise ConnectionError(
                f"cannot connect to Redis at {redact(self.url)}: {type(exc).__name__}: {exc}"
            ) from exc
        except ResponseError as exc:
            await self.close()
            raise ConfigError(
                f"stream {self.stream!r}, group {self.group!r} at {redact(self.url)}: {exc}"
            ) from exc
        except BaseException:
            await self.close()
            raise

    async def _check_group(self, ops: StreamOps) -> None:
        await ops.client.ping()
        if self.create_group:
            await ops.ensure_group(self.start_id)
        elif not await ops.group_exists():
            raise ConfigError(
                f"consumer group {self.group!r} of stream {self.stream!r} does not "
                f"exist (create it, or pass create_group=True)"
            )

    async def prepare_for_draining(self) -> None:
        """Stop reading: wake a blocked ``XREADGROUP`` and give back what it returns."""
        self._draining = True
        await self._settle_tasks(self.block + 1.0)

    async def close(self) -> None:
        """Give back unreturned entries, forget an unused default consumer, disconnect.

        Entries handed out and not yet acknowledged stay pending in the group. Commands
        still running after a bound are cancelled; one that goes on is ended by closing
        its connection, and is abandoned (and logged) if even that does not end it.
        """
        self._draining = self._acks.closed = True
        await self._settle_tasks(self.block + 2.0)
        await self._ack_tasks.wait(self.block + 2.0)
        groups = (self._bg, self._ack_tasks)
        for tasks in groups:
            await tasks.cancel(_CANCEL_BOUND)
        ops, self._ops = self._ops, None
        if ops is not None:
            if self._auto_consumer and not self._held and not any(t.tasks for t in groups):
                await self._forget_consumer(ops)
            await ops.client.aclose()  # also fails a command still running on it
        abandoned = {task for tasks in groups for task in await tasks.cancel(_CANCEL_BOUND)}
        if abandoned:
            _log.error(
                "%s: %d Redis command task(s) still running after close, abandoned: %s",
                self,
                len(abandoned),
                ", ".join(sorted(task.get_name() for task in abandoned)),
            )
        # Entries still held were abandoned unacknowledged: they stay pending, and once
        # idle for claim_idle they are reclaimed, by this producer too if it starts again.
        self._held.clear()
        self._reclaimer.restart()

    async def _forget_consumer(self, ops: StreamOps) -> None:
        try:
            async with asyncio.timeout(_CONNECT_TIMEOUT):
                await self._bg.run(ops.forget_consumer(), "forget-consumer")
        except (RedisError, OSError, TimeoutError) as exc:
            _log.debug("could not remove consumer %r from the group: %r", self.consumer, exc)

    async def _settle_tasks(self, timeout: float) -> None:
        """Wake blocked reads and wait, up to ``timeout``, for the background tasks."""
        deadline = time.monotonic() + timeout
        while self._bg.tasks and time.monotonic() < deadline:
            ops = self._ops
            if ops is not None:
                try:
                    async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                        await self._bg.run(ops.unblock_readers(self._client_name), "unblock")
                except (RedisError, OSError, TimeoutError) as exc:
                    _log.debug("could not wake blocked reads: %r", exc)
            others = {task for task in self._bg.tasks if not task.get_name().endswith(".unblock")}
            if not others:
                return
            await asyncio.wait(others, timeout=0.1)

    # -- fetching --------------------------------------------------------------------

    async def fetch(self, demand: int) -> list[Message]:
        """Return between 1 and ``demand`` messages: reclaimed ones first, then new ones.

        Waits while the stream has nothing for this consumer and while Redis cannot be
        reached; once draining, waits until cancelled.
        """
        demand = max(1, demand)
        retried = False
        while True:
            if self._draining:
                await asyncio.get_running_loop().create_future()
            try:
                entries = await self._take_shielded(demand)
            except CONNECTION_ERRORS as exc:
                if not retried and self._outage.since is None:
                    retried = True  # a dropped connection: again at once, on a new one
                    continue
                self._outage.failed("reading the stream", exc)
                await asyncio.sleep(self.reconnect_interval)
                continue
            except ResponseError as exc:
                await self._read_failed(exc)
                continue
            retried = False
            self._outage.recovered()
            fresh = [entry for entry in entries if entry.id not in self._held]
            if self._draining:
                self._give_back_later(fresh)
                continue
            for entry in fresh:
                self._held[entry.id] = entry
            if fresh:
                return [self._message(entry) for entry in fresh]

    def _message(self, entry: Entry) -> Message:
        metadata = {"id": entry.id, "stream": self.stream, "deliveries": entry.deliveries}
        return decode_message(entry.fields, self._decoder, self._acks, metadata)

    async def _take_shielded(self, demand: int) -> list[Entry]:
        """:meth:`_take` in a task of its own, whose entries are given back if we are cancelled."""
        return await self._bg.run(self._take(demand), "take", self._orphaned)

    def _orphaned(self, task: asyncio.Task[list[Entry]]) -> None:
        if task.cancelled():
            return
        if task.exception() is not None:
            _log.debug("an abandoned read of stream %r failed: %r", self.stream, task.exception())
        else:
            self._give_back_later([e for e in task.result() if e.id not in self._held])

    async def _take(self, demand: int) -> list[Entry]:
        ops = self._connect()
        entries = await self._reclaimer.reclaim(ops, demand)
        if entries or self._draining:
            return entries
        return await ops.read(demand, max(1, round(self.block * 1000)))

    async def _read_failed(self, exc: ResponseError) -> None:
        if is_nogroup(exc) and self.create_group:
            _log.warning(
                "consumer group %r of stream %r is missing on the server: creating it from %r",
                self.group,
                self.stream,
                self.start_id,
            )
            try:
                await self._bg.run(self._connect().ensure_group(self.start_id), "create-group")
            except CONNECTION_ERRORS as error:
                self._outage.failed("creating the consumer group", error)
            except ResponseError as error:
                _log.error("creating group %r on %r failed: %s", self.group, self.stream, error)
            else:
                self._reclaimer.restart()
                return
        else:
            _log.error(
                "reading stream %r as group %r failed: %s; retrying in %.3g s",
                self.stream,
                self.group,
                exc,
                self.reconnect_interval,
            )
        await asyncio.sleep(self.reconnect_interval)

    def _give_back_later(self, entries: list[Entry]) -> None:
        if entries:
            self._bg.spawn(self._give_back(entries), "give-back")

    async def _give_back(self, entries: list[Entry]) -> None:
        counts = [(e.id, max(0, e.deliveries - 1)) for e in entries]
        try:
            await self._connect().set_deliveries(counts, GIVE_BACK_IDLE_MS)
        except (RedisError, OSError) as exc:
            _log.warning(
                "could not give back %d unhandled entr(ies) of stream %r (%s); they are "
                "delivered again after claim_idle",
                len(entries),
                self.stream,
                exc,
            )
