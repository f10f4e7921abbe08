"""The pipeline: producers -> processors -> optional batchers -> batch handlers, with demand."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from underway._aio import Service
from underway.errors import ConfigError
from underway.pipelines._handlers import (
    HandleBatch,
    HandleFailed,
    HandleMessage,
    Handlers,
    PrepareMessages,
)
from underway.pipelines._policy import (
    BatcherConfig,
    ProcessorsConfig,
    parse_batchers,
    parse_processors,
    total_capacity,
)
from underway.pipelines._topology import Demand, Topology
from underway.pipelines.message import BatchInfo, Message
from underway.pipelines.producers._protocol import Producer
from underway.pipelines.rate_limit import RateLimiter
from underway.tasks.child import ChildSpec

if TYPE_CHECKING:
    from underway.tasks._policy import Restart
    from underway.tasks.child import Ready

__all__ = ["BatchInfo", "Pipeline", "PipelineState", "Producer"]

PipelineState = Literal["running", "draining", "stopped"]


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
        name: Name used in logs and telemetry, and the default id of :meth:`child_spec`.

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
        self._demand = Demand(self.processors, self.capacity)
        self._topology: Topology | None = None
        self._stop_asked = asyncio.Event()
        self._lifecycle = asyncio.Lock()

    @property
    def in_flight(self) -> int:
        """Messages taken from producers and not yet acknowledged."""
        return self._demand.in_flight

    @property
    def running(self) -> bool:
        """Whether the pipeline has started and not yet stopped."""
        return self._topology is not None

    @property
    def state(self) -> PipelineState:
        """``"running"``, ``"draining"`` (a stop is finishing the messages in flight; no
        more are fetched) or ``"stopped"``."""
        if self._topology is None:
            return "stopped"
        return "draining" if self._stop_asked.is_set() else "running"

    @property
    def in_batchers(self) -> int:
        """Of :attr:`in_flight`, the messages handed to batchers: waiting for their batch
        to be cut, or in ``handle_batch``."""
        return self._demand.in_flight - self._demand.in_processors

    def update_rate_limit(self, allowed: int | None = None, interval: float | None = None) -> None:
        """Change the rate limit while running.

        Raises:
            ConfigError: The pipeline has no rate limit, or the values are invalid.
        """
        if self.rate_limiter is None:
            raise ConfigError("this pipeline was built without rate_limit")
        self.rate_limiter.update(allowed, interval)

    async def start(self) -> None:
        """Start producers, processors and batchers.

        A producer's ``prepare_for_start`` error is raised here, after the producers already
        prepared were closed. A concurrent :meth:`stop` waits until the start is done.
        """
        async with self._lifecycle:
            if self._topology is not None:
                return
            topology = Topology(
                self.name,
                producers=self._producers,
                producer_concurrency=self.producer_concurrency,
                processors=self.processors,
                batchers=self.batchers,
                handlers=self._handlers,
                rate_limiter=self.rate_limiter,
                demand=self._demand,
            )
            self._stop_asked.clear()
            await topology.start()
            self._topology = topology

    async def stop(self, timeout: float | None = None) -> None:
        """Drain: stop pulling, finish in-flight messages, flush batches, acknowledge.

        Args:
            timeout: Bound on the drain (default ``shutdown_timeout``); messages still
                unfinished then are abandoned unacknowledged (the broker redelivers them).

        If the caller is cancelled meanwhile, the pipeline stops as with :meth:`stop_now`
        before the cancellation goes on.
        """
        self._stop_asked.set()
        async with self._lifecycle:
            topology = self._topology
            if topology is None:
                return
            try:
                await topology.stop(self.shutdown_timeout if timeout is None else timeout)
            finally:
                # Messages abandoned by the bound are the broker's again: forget them all.
                self._demand.reset()
                self._topology = None

    async def stop_now(self) -> None:
        """Stop without waiting for in-flight messages; hurries a :meth:`stop` in progress.

        Fetching stops, the workers are cancelled and the producers closed. A message that
        was not settled is never acknowledged: it stays with the broker, which delivers it
        again. Returns once the pipeline has stopped.
        """
        self._hurry()
        await self.stop(timeout=0)

    def _hurry(self) -> None:
        if self._topology is not None:
            self._topology.hurry()

    def push_messages(self, messages: Sequence[Message], *, flush: bool = False) -> None:
        """Feed messages straight to the processors, bypassing producers and demand.

        Args:
            messages: The messages (with their acknowledger set).
            flush: Emit each message's batch as soon as the message reaches its batcher.
        """
        topology = self._topology
        if topology is None or self._stop_asked.is_set():
            raise RuntimeError("the pipeline is not running")
        topology.push(messages, flush=flush)

    # -- supervision -----------------------------------------------------------------

    def child_spec(
        self,
        *,
        id: str | None = None,
        restart: Restart = "permanent",
        shutdown: float | None = None,
    ) -> ChildSpec:
        """A spec to run this pipeline under a :class:`~underway.tasks.Supervisor`.

        The child is ready once the pipeline started. Asked to stop, it drains within
        ``shutdown_timeout`` (a graceful :meth:`stop`); told to hurry, it stops as with
        :meth:`stop_now`. ``shutdown`` defaults to ``None``: the pipeline bounds its stop
        itself.
        """
        return ChildSpec(id or self.name, self.run, ready=True, restart=restart, shutdown=shutdown)

    async def run(self, *, ready: Ready | None = None) -> None:
        """Start the pipeline and run it in the calling task until it is stopped.

        Returns once the pipeline stopped: by :meth:`stop` called elsewhere, or when the
        supervisor asks the child to stop (a graceful stop). If the calling task is
        cancelled, the pipeline stops as with :meth:`stop_now` and the cancellation goes on.

        Args:
            ready: Given by a supervisor (see :meth:`child_spec`): called once started.
        """
        await self.start()
        try:
            if ready is not None:
                ready.on_shutdown(self._stop_asked.set)
                ready.on_hurry(self._hurry)
                ready()
            await self._stop_asked.wait()
            await self.stop()
        except asyncio.CancelledError:
            await self.stop_now()
            raise
