"""The pipeline: producers -> processors -> optional batchers -> batch handlers, with demand."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from underway._aio import Service
from underway.errors import ConfigError
from underway.pipelines._handlers import (
    HandleBatch,
    HandleFailed,
    HandleMessage,
    Handlers,
    PrepareMessages,
    maybe_await,
)
from underway.pipelines._policy import (
    BatcherConfig,
    ProcessorsConfig,
    demand,
    parse_batchers,
    parse_processors,
    partition,
    shares,
    total_capacity,
)
from underway.pipelines.batcher import Batcher, BatchInfo
from underway.pipelines.message import Message, call_ack, group_acks
from underway.pipelines.rate_limit import RateLimiter

__all__ = ["BatchInfo", "Pipeline", "Producer"]

_log = logging.getLogger("underway.pipelines")

_CANCEL_BOUND = 10.0  # seconds stop waits for a cancelled worker that goes on
_RECANCEL_INTERVAL = 0.05  # seconds between cancellations of a worker still running


@runtime_checkable
class Producer(Protocol):
    """A source of messages. ``fetch`` returns at most ``demand`` messages.

    ``fetch`` may wait until messages are available. It is cancelled on shutdown, so
    messages it has not returned must stay with the broker; with ``producer_concurrency``
    above 1 it is called concurrently. Optional hooks, plain or ``async``, all awaited by
    the pipeline:

    - ``prepare_for_start(capacity)`` before the first fetch, with the most messages the
      pipeline holds at once (a push-based broker sets its prefetch from it);
    - ``prepare_for_draining()`` when the pipeline starts to drain: stop taking messages;
    - ``close()`` once every message was acknowledged, or the shutdown bound ran out.
    """

    async def fetch(self, demand: int) -> Sequence[Message]:
        """Return between 1 and ``demand`` messages, waiting for them if needed."""
        ...


class Pipeline(Service):
    """Consume messages with bounded demand, optional batching and exactly-once acks.

    Args:
        producer: One producer or a list; all share the demand and the rate limit.
        handle_message: Called with each message; returns the (possibly updated) message or
            ``None``. An exception fails only that message. When it returns another
            ``Message`` object, that one's data, batcher, batch key, status, reason and ack
            options are carried over to the message it was given, which stays the one
            acknowledged (with its own metadata and acknowledger).
        processors: ``{"concurrency": n, "max_demand": m, "min_demand": k,
            "partition_by": fn(message) -> key}``. At most ``concurrency * max_demand``
            messages are in the processors at once, and :attr:`capacity` in the whole
            pipeline. With ``partition_by``, messages with equal keys are handled one at a
            time, in the order they were produced.
        batchers: ``{name: {"batch_size": int | fn(batch) -> bool, "batch_timeout": s,
            "concurrency": c, "partition_by": fn(message) -> key}}``; a message goes to one
            after ``message.put_batcher(name)``.
        handle_batch: Called as ``handle_batch(batcher, messages, info)``; an exception fails
            the whole batch.
        handle_failed: Called with failed messages before they are acknowledged; its own
            exception is logged and the acknowledgement still happens.
        prepare_messages: Called with each group of up to ``max_demand`` messages before
            ``handle_message`` (to preload data in bulk); returns one message per message
            given, in order (carried over like ``handle_message``'s). An exception, or a
            list of another length, fails the group.
        rate_limit: ``(allowed, interval_seconds)`` shared by all producers.
        producer_concurrency: Concurrent ``fetch`` loops per producer.
        shutdown_timeout: Seconds :meth:`stop` waits for in-flight messages to finish.
        name: Name used in logs and telemetry.

    Attributes:
        capacity: The most messages the pipeline holds at once: the processors'
            ``concurrency * max_demand`` plus, per batcher, ``batch_size`` times its
            ``concurrency + 1``. Producers are told it in ``prepare_for_start``.

    Raises:
        ConfigError: An option is invalid.
    """

    def __init__(
        self,
        *,
        producer: Producer | Sequence[Producer],
        handle_message: HandleMessage,
        processors: Mapping[str, Any] | None = None,
        batchers: Mapping[str, Mapping[str, Any]] | None = None,
        handle_batch: HandleBatch | None = None,
        handle_failed: HandleFailed | None = None,
        prepare_messages: PrepareMessages | None = None,
        rate_limit: tuple[int, float] | None = None,
        producer_concurrency: int = 1,
        shutdown_timeout: float = 30.0,
        name: str = "pipeline",
    ) -> None:
        producers = list(producer) if isinstance(producer, Sequence) else [producer]
        if not producers:
            raise ConfigError("a pipeline needs at least one producer")
        for p in producers:
            if not callable(getattr(p, "fetch", None)):
                raise ConfigError(f"producer {p!r} has no fetch(demand) method")
        self._producers = producers
        self.processors: ProcessorsConfig = parse_processors(processors)
        self.batchers: dict[str, BatcherConfig] = parse_batchers(batchers)
        if self.batchers and handle_batch is None:
            raise ConfigError("batchers are configured but handle_batch is missing")
        if (
            isinstance(producer_concurrency, bool)
            or not isinstance(producer_concurrency, int)
            or producer_concurrency < 1
        ):
            raise ConfigError(
                f"producer_concurrency must be an int >= 1, got {producer_concurrency!r}"
            )
        self.producer_concurrency = producer_concurrency
        if shutdown_timeout <= 0:
            raise ConfigError(f"shutdown_timeout must be > 0, got {shutdown_timeout!r}")
        self._handlers = Handlers(
            name, handle_message, handle_batch, handle_failed, prepare_messages
        )
        self.rate_limiter: RateLimiter | None = (
            RateLimiter(*rate_limit) if rate_limit is not None else None
        )
        self.shutdown_timeout = shutdown_timeout
        self.name = name
        self.capacity = total_capacity(self.processors, self.batchers)
        self._in_flight = 0
        self._in_processors = 0
        self._warned: set[int] = set()
        self._reserved = 0
        self._freed = asyncio.Event()
        self._draining = False
        self._running = False
        self._lifecycle = asyncio.Lock()
        self._flush_ids: set[int] = set()
        self._proc_qs: list[asyncio.Queue[list[Message]]] = self._new_queues()
        self._batchers: dict[str, Batcher] = {}
        self._producer_tasks: list[asyncio.Task[None]] = []
        self._worker_tasks: list[asyncio.Task[None]] = []

    @property
    def in_flight(self) -> int:
        """Messages taken from producers and not yet acknowledged."""
        return self._in_flight

    @property
    def running(self) -> bool:
        """Whether the pipeline has started and not yet stopped."""
        return self._running

    def update_rate_limit(self, allowed: int | None = None, interval: float | None = None) -> None:
        """Change the rate limit while running.

        Raises:
            ConfigError: The pipeline has no rate limit, or the values are invalid.
        """
        if self.rate_limiter is None:
            raise ConfigError("this pipeline was built without rate_limit")
        self.rate_limiter.update(allowed, interval)

    def _new_queues(self) -> list[asyncio.Queue[list[Message]]]:
        count = self.processors.concurrency if self.processors.partition_by else 1
        return [asyncio.Queue() for _ in range(count)]

    async def start(self) -> None:
        """Start producers, processors and batchers.

        A producer's ``prepare_for_start`` error is raised here, after the producers already
        prepared were closed. A concurrent :meth:`stop` waits until the start is done.
        """
        async with self._lifecycle:
            if self._running:
                return
            prepared: list[Producer] = []
            try:
                for producer in self._producers:
                    await self._hook(producer, "prepare_for_start", self.capacity)
                    prepared.append(producer)
            except BaseException:
                for producer in prepared:
                    await self._guarded_hook(producer, "close")
                raise
            self._spawn_all()

    def _spawn_all(self) -> None:
        self._running = True
        self._draining = False
        spawn = asyncio.get_running_loop().create_task
        queues = self._proc_qs
        for i in range(self.processors.concurrency):
            self._worker_tasks.append(spawn(self._processor(queues[i % len(queues)])))
        for name, config in self.batchers.items():
            batcher = self._batchers[name] = Batcher(config, self._flush_ids)
            self._worker_tasks.append(spawn(batcher.run(self._settle_batched)))
            outboxes = batcher.outboxes
            for i in range(config.concurrency):
                outbox = outboxes[i % len(outboxes)]
                self._worker_tasks.append(spawn(self._batch_processor(outbox)))
        loops = [p for p in self._producers for _ in range(self.producer_concurrency)]
        parts = shares(self.processors.capacity, len(loops))
        for producer, share in zip(loops, parts, strict=True):
            self._producer_tasks.append(spawn(self._produce(producer, share)))

    async def stop(self, timeout: float | None = None) -> None:
        """Drain: stop pulling, finish in-flight messages, flush batches, acknowledge.

        Args:
            timeout: Bound on the drain (default ``shutdown_timeout``); messages still
                unfinished then are abandoned unacknowledged (the broker redelivers them).
        """
        async with self._lifecycle:
            if not self._running:
                return
            await self._stop(self.shutdown_timeout if timeout is None else timeout)

    async def _stop(self, timeout: float) -> None:
        self._draining = True
        for producer in self._producers:
            await self._guarded_hook(producer, "prepare_for_draining")
        await self._cancel(self._producer_tasks)
        try:
            async with asyncio.timeout(timeout):
                await self._drain()
        except TimeoutError:
            _log.warning(
                "%s: shutdown bound reached with %d message(s) unfinished",
                self.name,
                self._in_flight,
            )
        await self._cancel(self._worker_tasks)
        for producer in self._producers:
            await self._guarded_hook(producer, "close")
        # Messages abandoned by the bound are the broker's again: forget them all.
        self._batchers.clear()
        self._proc_qs = self._new_queues()
        self._flush_ids.clear()
        self._in_flight = self._in_processors = self._reserved = 0
        self._running = False

    @staticmethod
    async def _hook(producer: Producer, name: str, *args: Any) -> None:
        hook = getattr(producer, name, None)
        if hook is not None:
            await maybe_await(hook(*args))

    async def _guarded_hook(self, producer: Producer, name: str) -> None:
        try:
            await self._hook(producer, name)
        except Exception:
            _log.exception("%s: %s() of producer %r failed", self.name, name, producer)

    def push_messages(self, messages: Sequence[Message], *, flush: bool = False) -> None:
        """Feed messages straight to the processors, bypassing producers and demand.

        Args:
            messages: The messages (with their acknowledger set).
            flush: Emit each message's batch as soon as the message reaches its batcher.
        """
        if not self._running or self._draining:
            raise RuntimeError("the pipeline is not running")
        if flush:
            self._flush_ids.update(id(m) for m in messages)
        self._admit(list(messages))

    # -- producers -------------------------------------------------------------------

    async def _produce(self, producer: Producer, share: int) -> None:
        while not self._draining:
            wanted = min(
                demand(self._in_processors + self._reserved, self.processors, share),
                self.capacity - self._in_flight - self._reserved,
            )
            if wanted <= 0:
                self._freed.clear()
                await self._freed.wait()
                continue
            self._reserved += wanted  # before any wait, so other loops see it
            try:
                if self.rate_limiter is not None:
                    granted = await self.rate_limiter.acquire(wanted)
                    self._reserved -= wanted - granted
                    wanted = granted
                messages = await producer.fetch(wanted)
            except Exception:
                _log.exception("%s: producer %r failed to fetch", self.name, producer)
                await asyncio.sleep(0.1)
                continue
            finally:
                self._reserved -= wanted
                self._freed.set()  # what was reserved and not filled is free again
            if len(messages) > wanted:
                self._overfed(producer, len(messages), wanted)
            if messages:
                self._admit(list(messages))

    def _overfed(self, producer: Producer, got: int, wanted: int) -> None:
        """Warn (once per producer) that ``fetch`` returned more than it was asked for.

        The messages are processed all the same (dropping them would lose them), but the
        pipeline then holds more than its capacity.
        """
        if id(producer) in self._warned:
            return
        self._warned.add(id(producer))
        _log.warning(
            "%s: producer %r returned %d message(s) when asked for %d; fetch must return "
            "at most the demand, or the pipeline holds more than its capacity",
            self.name,
            producer,
            got,
            wanted,
        )

    def _admit(self, messages: list[Message]) -> None:
        self._in_flight += len(messages)
        self._in_processors += len(messages)
        step = self.processors.max_demand
        if len(self._proc_qs) == 1:
            queue = self._proc_qs[0]
            for i in range(0, len(messages), step):
                queue.put_nowait(messages[i : i + step])
            return
        parts: dict[int, list[Message]] = {}
        for message in messages:
            parts.setdefault(self._partition_of(message), []).append(message)
        for index, part in parts.items():
            for i in range(0, len(part), step):
                self._proc_qs[index].put_nowait(part[i : i + step])

    def _partition_of(self, message: Message) -> int:
        assert self.processors.partition_by is not None
        try:
            key = self.processors.partition_by(message)
        except Exception as exc:
            message.failed(exc)
            return 0
        return partition(key, len(self._proc_qs))

    # -- processors ------------------------------------------------------------------

    async def _processor(self, queue: asyncio.Queue[list[Message]]) -> None:
        while True:
            chunk = await queue.get()
            try:
                await self._process_chunk(chunk)
            finally:
                queue.task_done()

    async def _process_chunk(self, chunk: list[Message]) -> None:
        handlers = self._handlers
        if handlers.prepare_messages is not None:
            await handlers.prepare(chunk)
        done: list[Message] = []
        for message in chunk:
            if not message.is_failed:
                await handlers.message(message)
            name = message.batcher
            if message.is_failed or name is None:
                done.append(message)
            elif not isinstance(name, str) or name not in self._batchers:
                done.append(message.failed(f"unknown batcher {name!r}"))
            else:
                self._batchers[name].inbox.put_nowait(message)
                self._in_processors -= 1  # its processor slot is free: ask for more
                self._freed.set()
        if done:
            await self._settle(done)

    # -- batch processors ------------------------------------------------------------

    async def _batch_processor(
        self, outbox: asyncio.Queue[tuple[list[Message], BatchInfo]]
    ) -> None:
        while True:
            batch, info = await outbox.get()
            try:
                await self._process_batch(batch, info)
            finally:
                outbox.task_done()

    async def _process_batch(self, batch: list[Message], info: BatchInfo) -> None:
        await self._handlers.batch(batch, info)
        await self._settle_batched(batch)

    # -- acknowledgement -------------------------------------------------------------

    async def _settle_batched(self, messages: list[Message]) -> None:
        await self._settle(messages, batched=True)

    async def _settle(self, messages: list[Message], *, batched: bool = False) -> None:
        try:
            failed = [m for m in messages if m.is_failed]
            if failed:
                await self._handlers.failed(failed)
            for acknowledger, ok, bad in group_acks(messages).values():
                for message in (*ok, *bad):
                    message.acked = True  # a late ack_immediately() must not ack it again
                try:
                    await call_ack(acknowledger, ok, bad)
                except Exception:
                    _log.exception("%s: acknowledger %r failed", self.name, acknowledger)
        finally:
            for message in messages:
                self._flush_ids.discard(id(message))
            self._in_flight -= len(messages)
            if not batched:
                self._in_processors -= len(messages)
            self._freed.set()

    async def _drain(self) -> None:
        for queue in self._proc_qs:
            await queue.join()
        for batcher in self._batchers.values():
            await batcher.join()

    async def _cancel(self, tasks: list[asyncio.Task[None]]) -> None:
        """Cancel ``tasks`` and wait for them, with a bound; a crash is logged, the caller's
        own cancellation is not swallowed.

        A cancellation can be lost in the code a worker awaits (redis-py on Python 3.11 loses
        one that meets a write just finished), and the worker then waits for its next
        message for ever: one still running is cancelled again, and abandoned (logged) after
        :data:`_CANCEL_BOUND` seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _CANCEL_BOUND
        pending = set(tasks)
        while pending:
            for task in pending:
                task.cancel()
            if loop.time() >= deadline:
                _log.error(
                    "%s: %d worker(s) still running %gs after being cancelled, abandoned "
                    "(does a handler catch CancelledError?)",
                    self.name,
                    len(pending),
                    _CANCEL_BOUND,
                )
                for task in pending:  # its outcome, if it ever ends, is nobody's
                    task.add_done_callback(lambda t: t.cancelled() or t.exception())
                break
            _done, pending = await asyncio.wait(pending, timeout=_RECANCEL_INTERVAL)
        for task in tasks:
            error = None if not task.done() or task.cancelled() else task.exception()
            if error is not None:
                _log.error("%s: a worker of the pipeline had crashed", self.name, exc_info=error)
        tasks.clear()
