"""Small asyncio helpers shared by every long-running component.

Every long-running part of underway has one lifecycle, :class:`Component`: ``await
start()`` returns once it runs, ``await stop(timeout)`` once it has ended. A group of
components starts in order and stops in reverse (:func:`start_in_order`,
:func:`stop_in_reverse`). A stop that must not be cut short (it writes what keeps work from
being lost) runs through :func:`finish_despite_cancel`.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol, Self, TypeVar, runtime_checkable

__all__ = [
    "Component",
    "Service",
    "cancel_and_wait",
    "finish_despite_cancel",
    "run_sync",
    "start_in_order",
    "stop_in_reverse",
    "wait_event",
]

T = TypeVar("T")
RECANCEL = 1.0  # seconds after which cancel_and_wait cancels a task again


@runtime_checkable
class Component(Protocol):
    """A long-running part: started once, stopped once.

    ``start`` returns once the component runs (its loops are tasks of its own); ``stop``
    returns once it has ended. ``timeout`` bounds what the component waits for while it
    stops (running work, a last write); ``None`` means the component's own default.
    """

    async def start(self) -> None:
        """Start; returns once running."""
        ...

    async def stop(self, timeout: float | None = None) -> None:
        """Stop; returns once ended."""
        ...


class Service(abc.ABC):
    """A public object that is started and stopped; ``async with`` does both.

    Its ``stop`` may take options of its own (a server's reason, a node's grace), all
    optional, so ``await service.stop()`` always works.
    """

    @abc.abstractmethod
    async def start(self) -> None:
        """Start."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def start_in_order(components: Sequence[Component]) -> None:
    """Start ``components`` one after another.

    If one fails to start, those already started are stopped in reverse order and the
    failure propagates.
    """
    started: list[Component] = []
    try:
        for component in components:
            await component.start()
            started.append(component)
    except BaseException:
        await stop_in_reverse(started)
        raise


async def stop_in_reverse(components: Sequence[Component]) -> None:
    """Stop ``components`` (given in start order) one after another, the last first.

    Each gets its own default timeout. A component whose stop raises, or is cancelled,
    does not keep the others running: each is stopped, then the first cancellation (or
    other exception that is not an ``Exception``) is raised, else the first failure.
    """
    failure: BaseException | None = None
    for component in reversed(components):
        try:
            await component.stop()
        except Exception as exc:
            failure = failure or exc
        except BaseException as exc:
            if failure is None or isinstance(failure, Exception):
                failure = exc
    if failure is not None:
        raise failure


async def finish_despite_cancel(coro: Coroutine[Any, Any, T], hurry: Callable[[], object]) -> T:
    """Run ``coro`` (a bounded stop) in a task of its own and return its result.

    If the caller is cancelled meanwhile, ``hurry()`` is called once (it must make the
    rest of ``coro`` short), ``coro`` is waited for to its end however often the caller is
    cancelled again, and then the cancellation propagates. An error of ``coro`` after the
    cancellation is attached to it as its ``__cause__``.
    """
    task = asyncio.create_task(coro)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError as cancelled:
        if task.done():
            raise
        hurry()
        while not task.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([task])
        if not task.cancelled() and task.exception() is not None:
            raise cancelled from task.exception()
        raise


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (if any) and wait until it has finished.

    A cancellation that the task loses is repeated every :data:`RECANCEL` seconds: on
    Python 3.11, ``asyncio.wait_for`` drops a cancellation that arrives as its awaitable
    completes, and a loop around it would then run on.
    """
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=RECANCEL)
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def wait_event(event: asyncio.Event, seconds: float | None) -> bool:
    """Wait for ``event`` up to ``seconds`` (``None``: forever); return whether it was set."""
    if seconds is None:
        await event.wait()
        return True
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
    return event.is_set()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end from sync code, even when this thread runs a loop.

    Without a running loop it runs in a new one here; on a running loop (sync code
    called from a coroutine) it runs in a new loop of a thread of its own, which this
    call waits for.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            box.append(asyncio.run(coro))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name="underway-sync-runner")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return box[0]
