"""The tasks of one stage: named, cancelled together within a bound, crashes reported."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

__all__ = ["CANCEL_BOUND", "CancelBudget", "Workers"]

_log = logging.getLogger("underway.pipelines")

CANCEL_BOUND = 10.0
"""Seconds one stop of a pipeline waits, all stages together, for cancelled workers that go
on, before abandoning them."""
_RECANCEL_INTERVAL = 0.05  # seconds between cancellations of a worker still running


class CancelBudget:
    """The seconds a stop has left to wait for cancelled workers, shared by its stages.

    Each :meth:`Workers.cancel` spends what it waited, so stages stopped one after another
    wait :data:`CANCEL_BOUND` seconds in all, not each.

    Attributes:
        left: Seconds left (``0`` or less once spent).
    """

    __slots__ = ("left",)

    def __init__(self, seconds: float = CANCEL_BOUND) -> None:
        self.left = seconds


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

    async def cancel(self, budget: CancelBudget | None = None) -> None:
        """Cancel every worker and wait for them, within ``budget``; a crash is logged.

        A cancellation can be lost in the code a worker awaits (redis-py on Python 3.11
        loses one that meets a write just finished), and the worker then waits for its
        next message for ever: one still running is cancelled again, and abandoned
        (logged) once ``budget`` is spent (a new one of :data:`CANCEL_BOUND` seconds if not
        given). Every worker gets one round to end, even when ``budget`` is already spent.
        The time waited is taken from ``budget``. The caller's own cancellation is not
        swallowed.
        """
        budget = budget if budget is not None else CancelBudget()
        tasks, self._tasks = self._tasks, []
        loop = asyncio.get_running_loop()
        began = loop.time()
        deadline = began + budget.left
        pending = set(tasks)
        try:
            while pending:
                for task in pending:
                    task.cancel()
                _done, pending = await asyncio.wait(pending, timeout=_RECANCEL_INTERVAL)
                if pending and loop.time() >= deadline:
                    _log.error(
                        "%s: %d worker(s) still running after being cancelled, abandoned "
                        "(does a handler catch CancelledError?)",
                        self.pipeline,
                        len(pending),
                    )
                    for task in pending:  # its outcome, if it ever ends, is nobody's
                        task.add_done_callback(lambda t: t.cancelled() or t.exception())
                    break
        finally:
            budget.left -= loop.time() - began
        for task in tasks:
            error = None if not task.done() or task.cancelled() else task.exception()
            if error is not None:
                _log.error(
                    "%s: a worker of the pipeline had crashed (%s)",
                    self.pipeline,
                    task.get_name(),
                    exc_info=error,
                )
