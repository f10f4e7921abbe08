"""The tasks of one stage: named, cancelled together within a bound, crashes reported."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

__all__ = ["CANCEL_BOUND", "Workers"]

_log = logging.getLogger("underway.pipelines")

CANCEL_BOUND = 10.0
"""Seconds a stage waits for a cancelled worker that goes on before abandoning it."""
_RECANCEL_INTERVAL = 0.05  # seconds between cancellations of a worker still running


class Workers:
    """The worker tasks of one stage of the pipeline called ``pipeline``.

    Not an ``asyncio.TaskGroup``: a group cancels its tasks once and then waits for them
    for ever, and a worker runs user and driver code that can lose that cancellation;
    here one that goes on is cancelled again, then abandoned past a bound. A worker that
    crashes does not stop the others either: the stage drains what it can and the crash
    is logged when the stage stops.
    """

    def __init__(self, pipeline: str) -> None:
        self.pipeline = pipeline
        self._tasks: list[asyncio.Task[None]] = []

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``coro`` as a worker task named ``<pipeline>:<name>``."""
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(coro, name=f"{self.pipeline}:{name}"))

    def __len__(self) -> int:
        return len(self._tasks)

    async def cancel(self) -> None:
        """Cancel every worker and wait for them, with a bound; a crash is logged.

        A cancellation can be lost in the code a worker awaits (redis-py on Python 3.11
        loses one that meets a write just finished), and the worker then waits for its
        next message for ever: one still running is cancelled again, and abandoned
        (logged) after :data:`CANCEL_BOUND` seconds. The caller's own cancellation is not
        swallowed.
        """
        tasks, self._tasks = self._tasks, []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CANCEL_BOUND
        pending = set(tasks)
        while pending:
            for task in pending:
                task.cancel()
            if loop.time() >= deadline:
                _log.error(
                    "%s: %d worker(s) still running %gs after being cancelled, abandoned "
                    "(does a handler catch CancelledError?)",
                    self.pipeline,
                    len(pending),
                    CANCEL_BOUND,
                )
                for task in pending:  # its outcome, if it ever ends, is nobody's
                    task.add_done_callback(lambda t: t.cancelled() or t.exception())
                break
            _done, pending = await asyncio.wait(pending, timeout=_RECANCEL_INTERVAL)
        for task in tasks:
            error = None if not task.done() or task.cancelled() else task.exception()
            if error is not None:
                _log.error(
                    "%s: a worker of the pipeline had crashed (%s)",
                    self.pipeline,
                    task.get_name(),
                    exc_info=error,
                )
