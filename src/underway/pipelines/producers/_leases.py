"""Keep the leases of messages in flight alive while the pipeline still holds them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import Generic, TypeVar

__all__ = ["LeaseKeeper"]

_log = logging.getLogger("underway.pipelines.leases")

T = TypeVar("T", bound=Hashable)


class LeaseKeeper(Generic[T]):
    """Extends, every ``interval`` seconds, the lease of every item still held.

    A broker that redelivers a message once its lease runs out (an SQS visibility timeout,
    a Pub/Sub ack deadline, a JetStream ``ack_wait``) must be told, while a slow handler
    still works on it, that the message is not lost. A producer :meth:`add`\\ s each
    message's handle when it hands the message to the pipeline and :meth:`discard`\\ s it
    when the message is settled; in between, ``extend(handles)`` is awaited every
    ``interval`` seconds with all the handles held at that moment (in the order they were
    added).

    ``extend`` raising does not stop the keeper: the failure is logged as a warning once
    per run of failures (and once more when extending works again), and the next tick
    tries again.

    Args:
        extend: Awaited with the handles to extend; it should bound its own duration.
        interval: Seconds between extensions (typically half the lease).
        name: Names the keeper's task and its log lines.
    """

    def __init__(
        self, extend: Callable[[list[T]], Awaitable[None]], *, interval: float, name: str
    ) -> None:
        if isinstance(interval, bool) or not isinstance(interval, int | float) or interval <= 0:
            raise ValueError(f"interval must be a number > 0, got {interval!r}")
        self._extend = extend
        self.interval = float(interval)
        self.name = name
        self._held: dict[T, None] = {}
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, item: object) -> bool:
        return item in self._held

    def add(self, items: Iterable[T]) -> None:
        """Hold ``items``: their leases are extended until they are discarded."""
        for item in items:
            self._held[item] = None

    def discard(self, items: Iterable[T]) -> None:
        """Stop extending ``items`` (settled, or no longer ours); unknown ones are ignored."""
        for item in items:
            self._held.pop(item, None)

    def clear(self) -> None:
        """Stop extending every item."""
        self._held.clear()

    def start(self) -> None:
        """Start extending in a task of the running loop (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"underway-leases-{self.name}"
            )

    async def stop(self) -> None:
        """Stop extending and wait for the task; items held stay held (see :meth:`clear`)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if self._held:
                await self.extend_now()

    async def extend_now(self) -> None:
        """Extend every held item's lease once, now (errors are logged, not raised)."""
        items = list(self._held)
        if not items:
            return
        try:
            await self._extend(items)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not self._failing:
                self._failing = True
                _log.warning(
                    "%s: extending the lease of %d message(s) failed (%s: %s); retrying every %gs",
                    self.name,
                    len(items),
                    type(exc).__name__,
                    exc,
                    self.interval,
                )
            return
        if self._failing:
            self._failing = False
            _log.info("%s: extending leases works again", self.name)
