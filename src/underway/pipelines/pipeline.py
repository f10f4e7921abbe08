"""The pipeline: producers -> processors -> optional batchers -> batch handlers, with demand."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Protocol, runtime_checkable

from underway import _telemetry as telemetry
from underway.errors import ConfigError
from underway.pipelines._policy import (
    BatcherConfig,
    ProcessorsConfig,
    batch_full,
    demand,
    parse_batchers,
    parse_processors,
)
from underway.pipelines.message import Message, call_ack, group_acks
from underway.pipelines.rate_limit import RateLimiter

__all__ = ["BatchInfo", "Pipeline", "Producer"]

_log = logging.getLogger("underway.pipelines")

BatchTrigger = Literal["size", "timeout", "flush"]


@runtime_checkable
class Producer(Protocol):
    """A source of messages. ``fetch`` returns at most ``demand`` messages.

    It may wait until messages are available (it is cancelled on shutdown, so messages it
    has not returned must stay with the broker). An optional ``prepare_for_draining()``
    coroutine is awaited when the pipeline starts to drain.
    """

    async def fetch(self, demand: int) -> Sequence[Message]:
        """Return between 1 and ``demand`` messages, waiting for them if needed."""
        ...


@dataclass(frozen=True)
class BatchInfo:
    """What a batch handler is told about its batch."""

    batcher: str
    batch_key: Any
    size: int
    trigger: BatchTrigger


HandleMessage = Callable[[Message], "Message | Awaitable[Message | None] | None"]
HandleBatch = Callable[[str, list[Message], BatchInfo], "Awaitable[None] | None"]
HandleFailed = Callable[[list[Message]], "Awaitable[None] | None"]
PrepareMessages = Callable[[list[Message]], "list[Message] | Awaitable[list[Message]]"]


class _Flush:
    """The marker a batcher's queue receives when it must cut its batches now."""


_FLUSH = _Flush()


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


class Pipeline:
    """Consume messages with bounded demand, optional batching and exactly-once acks.

    Args:
        producer: One producer or a list; all share the demand and the rate limit.
        handle_message: Called with each message; returns the (possibly updated) message or
            ``None``. An exception fails only that message.
        processors: ``{"concurrency": n, "max_demand": m, "min_demand": k}``. At most
            ``concurrency * max_demand`` messages are in flight at once.
        batchers: ``{name: {"batch_size": int | fn(batch) -> bool, "batch_timeout": s,
            "concurrency": c}}``; a message goes to one after ``message.put_batcher(name)``.
        handle_batch: Called as ``handle_batch(batcher, messages, info)``; an exception fails
            the whole batch.
        handle_failed: Called with failed messages before they are acknowledged; its own
            exception is logged and the acknowledgement still happens.
        prepare_messages: Called with each group of up to ``max_demand`` messages before
            ``handle_message`` (to preload data in bulk); an exception fails the group.
        rate_limit: ``(allowed, interval_seconds)`` shared by all producers.
        shutdown_timeout: Seconds :meth:`stop` waits for in-flight messages to finish.
        name: Name used in logs and telemetry.

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
        if shutdown_timeout <= 0:
            raise ConfigError(f"shutdown_timeout must be > 0, got {shutdown_timeout!r}")
        self._handle_message = handle_message
        self._handle_batch = handle_batch
        self._handle_failed = handle_failed
        self._prepare = prepare_messages
        self.rate_limiter: RateLimiter | None = (
            RateLimiter(*rate_limit) if rate_limit is not None else None
        )
        self.shutdown_timeout = shutdown_timeout
        self.name = name
        self._in_flight = 0
        self._reserved = 0
        self._freed = asyncio.Event()
        self._draining = False
        self._running = False
        self._flush_ids: set[int] = set()
        self._proc_q: asyncio.Queue[list[Message]] = asyncio.Queue()
        self._batch_in: dict[str, asyncio.Queue[Message | _Flush]] = {}
        self._batch_out: dict[str, asyncio.Queue[tuple[list[Message], BatchInfo]]] = {}
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

    async def start(self) -> None:
        """Start producers, processors and batchers."""
        if self._running:
            return
        self._running = True
        self._draining = False
        spawn = asyncio.get_running_loop().create_task
        for _ in range(self.processors.concurrency):
            self._worker_tasks.append(spawn(self._processor()))
        for name, config in self.batchers.items():
            self._batch_in[name] = asyncio.Queue()
            self._batch_out[name] = asyncio.Queue()
            self._worker_tasks.append(spawn(self._batcher(config)))
            for _ in range(config.concurrency):
                self._worker_tasks.append(spawn(self._batch_processor(name)))
        for producer in self._producers:
            self._producer_tasks.append(spawn(self._produce(producer)))

    async def stop(self, timeout: float | None = None) -> None:
        """Drain: stop pulling, finish in-flight messages, flush batches, acknowledge.

        Args:
            timeout: Bound on the drain (default ``shutdown_timeout``); messages still
                unfinished then are abandoned unacknowledged (the broker redelivers them).
        """
        if not self._running:
            return
        self._draining = True
        for producer in self._producers:
            prepare = getattr(producer, "prepare_for_draining", None)
            if prepare is not None:
                try:
                    await _maybe_await(prepare())
                except Exception:
                    _log.exception("%s: prepare_for_draining failed", self.name)
        await _cancel(self._producer_tasks)
        try:
            async with asyncio.timeout(self.shutdown_timeout if timeout is None else timeout):
                await self._drain()
        except TimeoutError:
            _log.warning(
                "%s: shutdown bound reached with %d message(s) unfinished",
                self.name,
                self._in_flight,
            )
        await _cancel(self._worker_tasks)
        self._running = False

    async def __aenter__(self) -> Pipeline:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

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

    async def _produce(self, producer: Producer) -> None:
        while not self._draining:
            wanted = demand(self._in_flight + self._reserved, self.processors)
            if wanted == 0:
                self._freed.clear()
                await self._freed.wait()
                continue
            if self.rate_limiter is not None:
                wanted = await self.rate_limiter.acquire(wanted)
            self._reserved += wanted
            try:
                messages = await producer.fetch(wanted)
            except Exception:
                _log.exception("%s: producer %r failed to fetch", self.name, producer)
                await asyncio.sleep(0.1)
                continue
            finally:
                self._reserved -= wanted
            if messages:
                self._admit(list(messages))

    def _admit(self, messages: list[Message]) -> None:
        self._in_flight += len(messages)
        step = self.processors.max_demand
        for i in range(0, len(messages), step):
            self._proc_q.put_nowait(messages[i : i + step])

    # -- processors ------------------------------------------------------------------

    async def _processor(self) -> None:
        while True:
            chunk = await self._proc_q.get()
            try:
                await self._process_chunk(chunk)
            finally:
                self._proc_q.task_done()

    async def _process_chunk(self, chunk: list[Message]) -> None:
        if self._prepare is not None:
            try:
                chunk = list(await _maybe_await(self._prepare(chunk)))
            except Exception as exc:
                for message in chunk:
                    message.failed(exc)
        done: list[Message] = []
        for message in chunk:
            if not message.is_failed:
                message = await self._run_handler(message)
            if message.is_failed or message.batcher is None:
                done.append(message)
            elif message.batcher not in self._batch_in:
                done.append(message.failed(f"unknown batcher {message.batcher!r}"))
            else:
                self._batch_in[message.batcher].put_nowait(message)
        if done:
            await self._settle(done)

    async def _run_handler(self, message: Message) -> Message:
        meta = {"pipeline": self.name} if telemetry.enabled() else {}
        try:
            with telemetry.span("pipeline.message", meta):
                result = await _maybe_await(self._handle_message(message))
        except Exception as exc:
            return message.failed(exc)
        if isinstance(result, Message):
            if result is not message and id(message) in self._flush_ids:
                self._flush_ids.add(id(result))
            return result
        return message

    # -- batchers --------------------------------------------------------------------

    async def _batcher(self, config: BatcherConfig) -> None:
        inbox = self._batch_in[config.name]
        pending: dict[Any, list[Message]] = {}
        deadlines: dict[Any, float] = {}
        getter: asyncio.Future[Message | _Flush] | None = None

        def emit(key: Any, trigger: BatchTrigger) -> None:
            batch = pending.pop(key)
            deadlines.pop(key, None)
            info = BatchInfo(config.name, key, len(batch), trigger)
            self._batch_out[config.name].put_nowait((batch, info))

        try:
            while True:
                if getter is None:
                    getter = asyncio.ensure_future(inbox.get())
                timeout = (
                    max(0.0, min(deadlines.values()) - time.monotonic()) if deadlines else None
                )
                done, _ = await asyncio.wait({getter}, timeout=timeout)
                now = time.monotonic()
                for key in [k for k, d in deadlines.items() if d <= now]:
                    emit(key, "timeout")
                if not done:
                    continue
                item, getter = getter.result(), None
                if isinstance(item, _Flush):
                    for key in list(pending):
                        emit(key, "flush")
                else:
                    key = item.batch_key
                    batch = pending.setdefault(key, [])
                    if not batch:
                        deadlines[key] = now + config.batch_timeout
                    batch.append(item)
                    if id(item) in self._flush_ids:
                        self._flush_ids.discard(id(item))
                        emit(key, "flush")
                    elif batch_full(config.batch_size, batch):
                        emit(key, "size")
                inbox.task_done()
        finally:
            if getter is not None:
                getter.cancel()

    async def _batch_processor(self, name: str) -> None:
        outbox = self._batch_out[name]
        while True:
            batch, info = await outbox.get()
            try:
                await self._process_batch(batch, info)
            finally:
                outbox.task_done()

    async def _process_batch(self, batch: list[Message], info: BatchInfo) -> None:
        assert self._handle_batch is not None
        meta = {"pipeline": self.name, "batcher": info.batcher} if telemetry.enabled() else {}
        try:
            with telemetry.span("pipeline.batch", meta) as extra:
                extra["size"] = info.size
                await _maybe_await(self._handle_batch(info.batcher, batch, info))
        except Exception as exc:
            for message in batch:
                if not message.is_failed:
                    message.failed(exc)
        await self._settle(batch)

    # -- acknowledgement -------------------------------------------------------------

    async def _settle(self, messages: list[Message]) -> None:
        try:
            failed = [m for m in messages if m.is_failed]
            if failed and self._handle_failed is not None:
                meta = {"pipeline": self.name} if telemetry.enabled() else {}
                try:
                    with telemetry.span("pipeline.handle_failed", meta) as extra:
                        extra["count"] = len(failed)
                        await _maybe_await(self._handle_failed(failed))
                except Exception:
                    _log.exception("%s: handle_failed raised; acknowledging anyway", self.name)
            for acknowledger, ok, bad in group_acks(messages).values():
                try:
                    await call_ack(acknowledger, ok, bad)
                except Exception:
                    _log.exception("%s: acknowledger %r failed", self.name, acknowledger)
        finally:
            self._in_flight -= len(messages)
            self._freed.set()

    async def _drain(self) -> None:
        await self._proc_q.join()
        for inbox in self._batch_in.values():
            inbox.put_nowait(_FLUSH)
        for inbox in self._batch_in.values():
            await inbox.join()
        for outbox in self._batch_out.values():
            await outbox.join()


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    tasks.clear()
