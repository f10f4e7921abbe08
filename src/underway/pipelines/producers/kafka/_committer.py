"""The committer of a :class:`KafkaProducer`: commits contiguous offsets in batches."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable

from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from underway.pipelines.producers.kafka._offsets import OffsetTracker
from underway.pipelines.producers.kafka._outage import Outage

__all__ = ["Committer"]

_log = logging.getLogger("underway.pipelines.kafka")


class Committer:
    """Commits each owned partition's commit point, every ``interval`` or ``batch`` settled.

    Commits never overlap (one lock, shared with the rebalance's final commit). A commit
    that fails because the group rebalanced is dropped (the partitions' next owner reads
    from the last commit); one that fails or times out because the broker is lost is
    retried at the next tick, with the outage logged once.

    Args:
        tracker: The offsets of the partitions owned.
        commit: Sends ``{tp: offset}`` to the group coordinator.
        assigned: The partitions the consumer is assigned now.
        outage: Logs a lost broker.
        interval: Seconds between commits.
        batch: Settled messages that trigger a commit before ``interval`` ends.
        timeout: Seconds one commit may take before it counts as failed.
        tick: Called after every commit attempt of the loop (keeps the consumer polling).
    """

    def __init__(
        self,
        tracker: OffsetTracker[TopicPartition],
        commit: Callable[[dict[TopicPartition, int]], Awaitable[None]],
        assigned: Callable[[], set[TopicPartition]],
        outage: Outage,
        *,
        interval: float,
        batch: int,
        timeout: float,
        tick: Callable[[], Awaitable[None]],
    ) -> None:
        self._tracker = tracker
        self._commit = commit
        self._assigned = assigned
        self._outage = outage
        self._interval = interval
        self._batch = batch
        self._timeout = timeout
        self._tick = tick
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._settled = 0
        self._task: asyncio.Task[None] | None = None

    def settled(self, count: int) -> None:
        """Count ``count`` settled messages; enough of them wake the committer."""
        self._settled += count
        if self._settled >= self._batch:
            self._wake.set()

    def start(self, name: str) -> None:
        """Start committing in a task of its own."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name=name)

    async def stop(self) -> None:
        """Stop the loop (a commit under way is cancelled; call :meth:`commit` after)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            # Commit every interval, or sooner once enough messages were settled.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._wake.wait()
            self._wake.clear()
            self._settled = 0
            await self.commit()
            try:
                await self._tick()
            except KafkaError as exc:
                _log.debug("keeping the consumer polling failed: %s", exc)

    async def commit(self, partitions: Iterable[TopicPartition] | None = None) -> bool:
        """Commit the commit points that moved on (of ``partitions``, or all owned).

        Returns whether everything there was to commit was committed.
        """
        async with self._lock:
            points = self._tracker.to_commit(partitions)
            assigned = self._assigned()
            points = {tp: point for tp, point in points.items() if tp in assigned}
            if not points:
                return True
            try:
                async with asyncio.timeout(self._timeout):
                    await self._commit({tp: offset for tp, (offset, _) in points.items()})
            except (CommitFailedError, IllegalStateError) as exc:
                self._outage.recovered()  # the coordinator answered
                _log.warning("commit dropped, the group rebalanced: %s", _first_line(exc))
                return False
            except KafkaError as exc:
                self._outage.failed("committing offsets", exc)
                return False
            except TimeoutError:
                late = TimeoutError(f"no answer within {self._timeout:g} s")
                self._outage.failed("committing offsets", late)
                return False
            self._tracker.committed(points)
            self._outage.recovered()
            return True


def _first_line(exc: BaseException) -> str:
    """An exception as one short line (aiokafka's commit errors span several)."""
    text = " ".join(str(exc.args[-1] if exc.args else exc).split())
    return f"{type(exc).__name__}: {text[:200]}"
