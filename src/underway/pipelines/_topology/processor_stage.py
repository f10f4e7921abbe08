"""The processor stage: ``prepare_messages`` and ``handle_message``, partitioned by key."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable, Mapping
from itertools import groupby
from operator import attrgetter

from underway.pipelines._handlers import Handlers
from underway.pipelines._policy import ProcessorsConfig, partition
from underway.pipelines._topology.acker import Acker
from underway.pipelines._topology.batcher_stage import BatcherStage
from underway.pipelines._topology.demand import Demand
from underway.pipelines._topology.stage import Stage
from underway.pipelines.message import Message

__all__ = ["ProcessorStage"]

_ordering_key = attrgetter("ordering_key")


class _Lane:
    """The chunks of one ordering key, handled by one processor at a time, in order."""

    __slots__ = ("chunks", "key")

    def __init__(self, key: Hashable) -> None:
        self.key = key
        self.chunks: deque[list[Message]] = deque()


class ProcessorStage(Stage):
    """``concurrency`` processors taking chunks of up to ``max_demand`` messages.

    Without ``partition_by`` they share one queue; with it, each has its own and a
    message goes to the one its key maps to, so equal keys are handled in order. A handled
    message goes to its batcher (in ``batchers``), or is settled at once.

    Without ``partition_by``, messages whose producer gave them an ``ordering_key`` go to
    that key's lane: a lane is in the shared queue at most once, and the processor that
    takes it handles its chunks until it is empty, so equal keys are handled one at a
    time, in order, while any idle processor can take any lane.
    """

    def __init__(
        self,
        pipeline: str,
        config: ProcessorsConfig,
        *,
        handlers: Handlers,
        demand: Demand,
        acker: Acker,
        batchers: Mapping[str, BatcherStage],
        hurried: asyncio.Event,
    ) -> None:
        super().__init__(pipeline, hurried)
        self.config = config
        self._handlers = handlers
        self._demand = demand
        self._acker = acker
        self._batchers = batchers
        count = config.concurrency if config.partition_by is not None else 1
        self._queues: list[asyncio.Queue[list[Message] | _Lane]] = [
            asyncio.Queue() for _ in range(count)
        ]
        self._lanes: dict[Hashable, _Lane] = {}

    async def start(self) -> None:
        """Spawn the processors."""
        queues = self._queues
        for i in range(self.config.concurrency):
            self.workers.spawn(self._run(queues[i % len(queues)]), f"processor:{i}")

    async def _drain(self) -> None:
        for queue in self._queues:
            await queue.join()

    def admit(self, messages: list[Message]) -> None:
        """Take ``messages`` in (counted by the demand), in chunks of ``max_demand``."""
        self._demand.admit(len(messages))
        step = self.config.max_demand
        if len(self._queues) == 1:
            queue = self._queues[0]
            if messages and (
                messages[0].ordering_key is not None
                or any(m.ordering_key is not None for m in messages)
            ):
                self._admit_ordered(queue, messages)
                return
            for i in range(0, len(messages), step):
                queue.put_nowait(messages[i : i + step])
            return
        parts: dict[int, list[Message]] = {}
        for message in messages:
            parts.setdefault(self._partition_of(message), []).append(message)
        for index, part in parts.items():
            for i in range(0, len(part), step):
                self._queues[index].put_nowait(part[i : i + step])

    def _admit_ordered(
        self, queue: asyncio.Queue[list[Message] | _Lane], messages: list[Message]
    ) -> None:
        step = self.config.max_demand
        try:
            loose, keyed = _by_key(messages)
        except Exception:  # a key whose == misbehaves: sort them one at a time
            loose, keyed = _by_key_one_at_a_time(messages)
        for i in range(0, len(loose), step):
            queue.put_nowait(loose[i : i + step])
        for key, group in keyed.items():
            lane = self._lanes.get(key)
            scheduled = lane is not None
            if lane is None:
                lane = self._lanes[key] = _Lane(key)
            for i in range(0, len(group), step):
                lane.chunks.append(group[i : i + step])
            if not scheduled:
                queue.put_nowait(lane)

    def _partition_of(self, message: Message) -> int:
        assert self.config.partition_by is not None
        try:
            key = self.config.partition_by(message)
        except Exception as exc:
            message.failed(exc)
            return 0
        return partition(key, len(self._queues))

    async def _run(self, queue: asyncio.Queue[list[Message] | _Lane]) -> None:
        while True:
            item = await queue.get()
            try:
                if isinstance(item, _Lane):
                    await self._process_lane(item)
                else:
                    await self._process(item)
            finally:
                queue.task_done()

    async def _process_lane(self, lane: _Lane) -> None:
        try:
            while lane.chunks:
                await self._process(lane.chunks[0])
                lane.chunks.popleft()
        finally:
            # Done, or cut short (its messages stay unacknowledged, as any in-flight
            # chunk's): a later message of this key starts a new lane.
            del self._lanes[lane.key]

    async def _process(self, chunk: list[Message]) -> None:
        handlers = self._handlers
        if handlers.prepare_messages is not None:
            await handlers.prepare(chunk)
        await handlers.messages(chunk)
        if not chunk:
            return
        acknowledger = chunk[0].acknowledger
        for message in chunk:
            if (
                message.status != "ok"
                or message.batcher is not None
                or message.acked
                or message.acknowledger is not acknowledger
            ):
                break
        else:  # the usual chunk: all succeeded, none goes on, one acknowledger
            await self._acker.settle_successful(chunk, acknowledger)
            return
        for message in chunk:
            if message.batcher is not None and message.status != "failed":
                chunk = self._route(chunk)  # some go on to a batcher
                break
        if chunk:
            await self._acker.settle(chunk)

    def _route(self, chunk: list[Message]) -> list[Message]:
        """Hand the handled messages bound for a batcher to it; returns the others."""
        done: list[Message] = []
        for message in chunk:
            name = message.batcher
            if message.is_failed or name is None:
                done.append(message)
            elif not isinstance(name, str) or name not in self._batchers:
                done.append(message.failed(f"unknown batcher {name!r}"))
            else:
                self._batchers[name].put(message)
                self._demand.hand_to_batcher()  # its processor slot is free: ask for more
        return done


def _by_key(messages: list[Message]) -> tuple[list[Message], dict[Hashable, list[Message]]]:
    """``messages`` without an ordering key, and those with one by key, in order.

    Messages come in runs of one key (a fetch of one partition), so they are taken a run
    at a time. A message whose key cannot be hashed fails and joins the loose ones.
    """
    loose: list[Message] = []
    keyed: dict[Hashable, list[Message]] = {}
    for key, run in groupby(messages, _ordering_key):
        if key is None:
            loose += run
            continue
        try:
            group = keyed.setdefault(key, [])
        except TypeError:  # an unhashable key: fail its messages, keep the rest
            # A run's keys are equal, not all alike: a frozenset may follow an equal set.
            # Each message of the run is sorted by its own key, in order.
            one_loose, one_keyed = _by_key_one_at_a_time(list(run))
            loose += one_loose
            for own, messages_of in one_keyed.items():
                keyed.setdefault(own, []).extend(messages_of)
            continue
        group += run
    return loose, keyed


def _by_key_one_at_a_time(
    messages: list[Message],
) -> tuple[list[Message], dict[Hashable, list[Message]]]:
    """:func:`_by_key` for keys that cannot even be compared: each message on its own."""
    loose: list[Message] = []
    keyed: dict[Hashable, list[Message]] = {}
    for message in messages:
        key = message.ordering_key
        if key is None:
            loose.append(message)
            continue
        try:
            keyed.setdefault(key, []).append(message)
        except Exception as exc:  # unhashable, or its == raised
            loose.append(message.failed(exc))
    return loose, keyed
