"""The tasks a :class:`RedisStreamProducer` runs its Redis commands in, never its caller's.

redis-py can lose a cancellation that arrives in the middle of a command. With a
``socket_timeout`` (the producer always sets one) it writes each command under
``asyncio.wait_for``, and on Python 3.11 ``wait_for`` returns the write's result instead of
raising when the cancellation meets a write that has just finished (CPython gh-86296, fixed
in 3.12). The task that lost its cancellation goes on: a pipeline loop waits for the next
message, and whoever waits for that task to end waits forever.

So no task of the pipeline (a fetch loop, a processor acknowledging, a stop) runs a Redis
command itself. Each command runs in a task of the producer and is awaited through
:func:`asyncio.shield`, whose cancellation is never lost: the caller ends at once, and the
command's task finishes by itself (every command is bounded by ``socket_timeout``). Those
tasks are cancelled only at close, and never awaited without a bound: a cancellation is
repeated until it lands, and a task that still goes on is abandoned once its connection is
closed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

_log = logging.getLogger("underway.pipelines.redis")

T = TypeVar("T")

#: Seconds between cancellations of a task that has not ended yet.
_RECANCEL_INTERVAL = 0.05


class CommandTasks:
    """The background tasks of one producer.

    Args:
        prefix: Prefix of the tasks' names.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, T], what: str) -> asyncio.Task[T]:
        """Run ``coro`` in a task of its own, kept until it ends."""
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.prefix}.{what}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def run(
        self,
        coro: Coroutine[Any, Any, T],
        what: str,
        orphaned: Callable[[asyncio.Task[T]], None] | None = None,
    ) -> T:
        """Await ``coro`` run in a task of its own: a cancellation of the caller is never lost.

        When the caller is cancelled, the task goes on and, once done, is handed to
        ``orphaned`` (by default its error, if any, is only logged).
        """
        task = self.spawn(coro, what)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(orphaned or _forget)
            raise

    async def wait(self, bound: float) -> None:
        """Wait up to ``bound`` seconds for every task, those spawned meanwhile included."""
        deadline = time.monotonic() + bound
        while self.tasks and (remaining := deadline - time.monotonic()) > 0:
            await asyncio.wait(set(self.tasks), timeout=min(0.1, remaining))

    async def cancel(self, bound: float) -> set[asyncio.Task[Any]]:
        """Cancel every task and wait up to ``bound`` seconds; returns those still running.

        A task still running is cancelled again every few milliseconds, as a cancellation
        redis-py lost lands at the task's next wait.
        """
        deadline = time.monotonic() + bound
        pending = set(self.tasks)
        while pending:
            for task in pending:
                task.cancel()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            _done, pending = await asyncio.wait(pending, timeout=min(_RECANCEL_INTERVAL, remaining))
            pending |= self.tasks  # a task spawned by one that ended (a give-back)
        for task in pending:
            task.add_done_callback(_forget)
        return pending


def _forget(task: asyncio.Task[Any]) -> None:
    """Retrieve the outcome of a task nobody awaits any more, logging an error."""
    if not task.cancelled() and task.exception() is not None:
        _log.debug("%s ended with %r", task.get_name(), task.exception())
