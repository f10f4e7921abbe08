"""Honest shutdown of tasks: ask, wait, cancel, wait, report what would not stop.

A coroutine cannot be killed. Cancellation raises ``CancelledError`` at its next ``await``,
and a coroutine may catch it, or block the event loop, and go on. So stopping a task is a
request in two steps: the *ask* (a cooperative hook, or a first cancellation that lets its
cleanup run), then after ``timeout`` seconds a second cancellation that interrupts that
cleanup. A task still running ``cancel_timeout`` seconds later is reported and *abandoned*:
it keeps running, a strong reference keeps it alive, and how it eventually ends is logged.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable, Collection
from typing import Any, Literal

__all__ = ["abandoned", "hurry", "shutdown"]

_log = logging.getLogger("underway.tasks")
_abandoned: set[asyncio.Task[Any]] = set()  # strong references until they end
_reported: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()  # reported as stuck, once

Phase = Literal["shutdown", "cancel"]
Report = Callable[[asyncio.Task[Any], Phase], None]


def abandoned() -> list[asyncio.Task[Any]]:
    """Tasks given up on (cancelled, never seen to end) that are still running."""
    return [t for t in _abandoned if not t.done()]


def _keep(task: asyncio.Task[Any]) -> None:
    if task.done() or task in _abandoned:
        return
    _abandoned.add(task)
    task.add_done_callback(_ended)


def _give_up(task: asyncio.Task[Any], report: Report | None) -> None:
    """Report ``task`` as one that would not stop (once), and keep it alive."""
    if task.done() or task in _reported:
        return
    _reported.add(task)
    if report is not None:
        report(task, "cancel")
    _keep(task)


def _ended(task: asyncio.Task[Any]) -> None:
    _abandoned.discard(task)
    stuck = task in _reported
    name = task.get_name()
    if task.cancelled():
        if stuck:
            _log.warning("task %s, which would not stop, has now stopped", name)
    elif task.exception() is not None:
        _log.error("task %s failed while stopping", name, exc_info=task.exception())
    elif stuck:
        _log.warning("task %s, which would not stop, has now returned", name)


def hurry(
    tasks: Collection[asyncio.Task[Any]], *, cancel_timeout: float, report: Report | None = None
) -> None:
    """Cancel ``tasks`` now without waiting; report those still running ``cancel_timeout`` later.

    Used when the stopper itself is cancelled: it must not wait, but a task that ignores
    the cancellation is still reported, and kept alive until it ends.
    """
    live = [t for t in tasks if not t.done()]
    if not live:
        return
    for task in live:
        task.cancel()
        _keep(task)

    def check() -> None:
        for task in live:
            _give_up(task, report)

    asyncio.get_running_loop().call_later(cancel_timeout, check)


def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()


async def _wait(
    tasks: set[asyncio.Task[Any]], timeout: float | None, cut: asyncio.Future[None] | None
) -> set[asyncio.Task[Any]]:
    """Wait until ``tasks`` are done, ``timeout`` passed or ``cut`` is done; return the rest."""
    if cut is None:
        if timeout is None:
            await asyncio.wait(tasks)
            return set()
        return (await asyncio.wait(tasks, timeout=timeout))[1]
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    pending = set(tasks)
    while pending and not cut.done():
        left = None if deadline is None else deadline - loop.time()
        if left is not None and left <= 0:
            break
        waiting: set[asyncio.Future[Any]] = {*pending, cut}
        await asyncio.wait(waiting, timeout=left, return_when=asyncio.FIRST_COMPLETED)
        pending = {t for t in pending if not t.done()}
    return pending


async def shutdown(
    tasks: Collection[asyncio.Task[Any]],
    *,
    timeout: float | None,
    cancel_timeout: float,
    ask: Callable[[asyncio.Task[Any]], None] = _cancel,
    report: Report | None = None,
    cut: asyncio.Future[None] | None = None,
) -> set[asyncio.Task[Any]]:
    """Stop ``tasks`` together: ask each, wait ``timeout``, cancel, wait, give up.

    Args:
        tasks: The tasks to stop; those already done are skipped.
        timeout: Seconds between the ask and the cancellation (``None``: wait forever;
            ``0``: skip the ask and cancel at once).
        cancel_timeout: Seconds to wait after the cancellation before giving up on a task.
        ask: How to ask one task to stop (default: cancel it).
        report: Called with each task that did not stop in time and the phase that timed
            out: ``"shutdown"`` (it is cancelled next) or ``"cancel"`` (it is given up on).
        cut: Once this future is done, the wait after the ask ends and the cancellation
            comes at once (a hurried stop); done before the call, the ask is skipped as
            with ``timeout=0``.

    Returns:
        The tasks that would not stop. They keep running; a strong reference keeps them
        alive and how they end is logged.

    If the caller is cancelled meanwhile, the tasks still running are cancelled at once
    (see :func:`hurry`) and ``CancelledError`` propagates.
    """
    live = {t for t in tasks if not t.done()}
    if not live:
        return set()
    try:
        if timeout != 0 and not (cut is not None and cut.done()):
            for task in live:
                ask(task)
            live = await _wait(live, timeout, cut)
            if not live:
                return set()
            if report is not None and not (cut is not None and cut.done()):
                for task in live:
                    report(task, "shutdown")
        for task in live:
            task.cancel()
        live = (await asyncio.wait(live, timeout=cancel_timeout))[1]
    except asyncio.CancelledError:
        hurry(live, cancel_timeout=cancel_timeout, report=report)
        raise
    for task in live:
        _give_up(task, report)
    return live
