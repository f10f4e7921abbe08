"""``async_stream``: run a function over an iterable in concurrent tasks, lazily, in order."""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
)
from typing import Any, Literal, TypeVar, overload

from underway import _telemetry as telemetry
from underway.errors import ConfigError, TaskTimeout
from underway.tasks._policy import ON_TIMEOUT, OnTimeout, check_choice, check_int, check_timeout
from underway.tasks._shutdown import Phase, shutdown
from underway.tasks.outcome import Exit

__all__ = ["async_stream"]

_log = logging.getLogger("underway.tasks")

T = TypeVar("T")
R = TypeVar("R")

CLOSE_TIMEOUT = 1.0
"""Seconds a closing stream waits for its cancelled tasks before reporting them."""


@overload
def async_stream(
    iterable: Iterable[T] | AsyncIterable[T],
    fn: Callable[[T], Coroutine[Any, Any, R]],
    *,
    max_concurrency: int | None = ...,
    ordered: bool = ...,
    timeout: float | None = ...,
    on_timeout: Literal["raise"] = ...,
) -> AsyncGenerator[R, None]: ...


@overload
def async_stream(
    iterable: Iterable[T] | AsyncIterable[T],
    fn: Callable[[T], Coroutine[Any, Any, R]],
    *,
    max_concurrency: int | None = ...,
    ordered: bool = ...,
    timeout: float | None = ...,
    on_timeout: Literal["kill_task"],
) -> AsyncGenerator[R | Exit, None]: ...


def async_stream(
    iterable: Iterable[T] | AsyncIterable[T],
    fn: Callable[[T], Coroutine[Any, Any, R]],
    *,
    max_concurrency: int | None = None,
    ordered: bool = True,
    timeout: float | None = 5.0,
    on_timeout: OnTimeout = "raise",
) -> AsyncGenerator[Any, None]:
    """Run ``fn(item)`` for each item in its own task, at most ``max_concurrency`` at once.

    Nothing runs until the result is iterated. Items are pulled from ``iterable`` (sync or
    async) only when a slot is free, so an endless source is fine. Tasks keep running
    while the consumer handles a result. A slot is taken from the pull of an item until
    its result is yielded (as in Elixir), so the stream never runs more than
    ``max_concurrency`` items ahead of the consumer, however slow it is.

    An exception from ``fn`` stops the stream: the other tasks are cancelled and the
    exception is raised to the consumer (the tasks are linked to it). When the consumer
    stops early (``break`` then :meth:`aclose`, an exception, a cancellation), the tasks in
    flight are cancelled and awaited. Without ``aclose`` that happens only when the
    generator is garbage-collected, so prefer
    ``async with contextlib.aclosing(async_stream(...)) as results:``.

    Args:
        iterable: The items (an iterable or an async iterable).
        fn: An ``async`` function of one item.
        max_concurrency: Most items in flight at once, running or done but not yet
            yielded (default: the number of CPUs, as Elixir's).
        ordered: Yield results in input order (a slow item holds back later results, and
            once ``max_concurrency`` of them wait, later tasks); ``False``: as they
            complete.
        timeout: Seconds each task may run (``None``: no limit).
        on_timeout: ``"raise"``: a task past its timeout stops the stream with
            :class:`~underway.errors.TaskTimeout`; ``"kill_task"``: it is cancelled and its
            item yields :class:`~underway.tasks.Exit` ``("timeout", input=item)``.

    Returns:
        An async generator of results (and ``Exit`` values with ``"kill_task"``).

    Raises:
        ConfigError: An option is invalid (raised here, not at the first iteration).
    """
    where = "async_stream"
    if not callable(fn):
        raise ConfigError(f"{where}: fn must be an async function, got {fn!r}")
    if max_concurrency is None:
        limit = os.cpu_count() or 1
    else:
        limit = check_int(where, "max_concurrency", max_concurrency, 1)
    if not isinstance(ordered, bool):
        raise ConfigError(f"{where}: ordered must be True or False, got {ordered!r}")
    seconds = check_timeout(where, "timeout", timeout)
    kill = check_choice(where, "on_timeout", on_timeout, ON_TIMEOUT) == "kill_task"
    if isinstance(iterable, AsyncIterable):
        source: Iterator[Any] | AsyncIterator[Any] = aiter(iterable)
    elif isinstance(iterable, Iterable):
        source = iter(iterable)
    else:
        raise ConfigError(f"{where}: expected an iterable or async iterable, got {iterable!r}")
    return _Stream(fn, limit, ordered, seconds, kill).run(source)


class _Stream:
    """The state of one iteration; callbacks settle tasks, the generator yields them."""

    __slots__ = (
        "count",
        "deadlines",
        "delivered",
        "exhausted",
        "failure",
        "finished",
        "fn",
        "kill",
        "killed",
        "limit",
        "loop",
        "ordered",
        "pending",
        "pull",
        "running",
        "timed_out",
        "timeout",
        "timer",
        "waiter",
    )

    def __init__(
        self, fn: Callable[[Any], Any], limit: int, ordered: bool, timeout: float | None, kill: bool
    ) -> None:
        self.fn = fn
        self.limit = limit
        self.ordered = ordered
        self.timeout = timeout
        self.kill = kill
        self.running: set[asyncio.Task[Any]] = set()
        self.pending: deque[tuple[asyncio.Task[Any], Any]] = deque()  # ordered: input order
        self.finished: deque[asyncio.Task[Any]] = deque()  # unordered: completion order
        self.deadlines: deque[tuple[float, asyncio.Task[Any], Any]] = deque()
        self.timed_out: dict[asyncio.Task[Any], Any] = {}  # settled as Exit, not yet yielded
        self.killed: set[asyncio.Task[Any]] = set()  # cancelled for a timeout, not yet ended
        self.failure: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.pull: asyncio.Task[Any] | None = None
        self.exhausted = False
        self.count = 0  # items pulled
        self.delivered = 0  # results yielded

    async def run(self, source: Iterator[Any] | AsyncIterator[Any]) -> AsyncGenerator[Any, None]:
        """Yield outcomes until the source is exhausted and every task settled."""
        self.loop: asyncio.AbstractEventLoop = asyncio.get_running_loop()
        sync = isinstance(source, Iterator)
        running = self.running
        try:
            while True:
                if not self.exhausted and self._free():
                    if sync:
                        self._fill(source)  # type: ignore[arg-type]
                    else:
                        self._pull(source)  # type: ignore[arg-type]
                if self.failure is not None:
                    raise self.failure
                if self.ordered:
                    pending = self.pending
                    if pending:
                        task, item = pending[0]
                        if task.done() or task in self.timed_out:
                            pending.popleft()
                            self.delivered += 1
                            yield self._outcome(task, item)
                            continue
                    elif self.exhausted:
                        return
                else:
                    finished = self.finished
                    if finished:
                        task = finished.popleft()
                        self.delivered += 1
                        yield self._outcome(task, self.timed_out.get(task))
                        continue
                    if self.exhausted and len(running) <= len(self.killed):
                        return
                waiter = self.waiter = self.loop.create_future()
                await waiter
        finally:
            await self._close()

    # -- input ----------------------------------------------------------------------------

    def _free(self) -> bool:
        """Whether a slot is free: under ``limit`` tasks running and items not yet yielded."""
        limit = self.limit
        return len(self.running) < limit and self.count - self.delivered < limit

    def _fill(self, source: Iterator[Any]) -> None:
        now = self.loop.time()
        while self._free():
            try:
                item = next(source)
            except StopIteration:
                self.exhausted = True
                return
            self._spawn(item, now)

    def _pull(self, source: AsyncIterator[Any]) -> None:
        while self._free():
            pull = self.pull
            if pull is None:
                pull = self.pull = self.loop.create_task(_anext(source), name="async_stream:pull")
                pull.add_done_callback(self._pulled)
            if not pull.done():
                return
            self.pull = None
            if pull.cancelled():
                raise RuntimeError("async_stream: the source's iteration was cancelled")
            error = pull.exception()
            if error is not None:
                raise error
            found, item = pull.result()
            if not found:
                self.exhausted = True
                return
            self._spawn(item, self.loop.time())

    def _spawn(self, item: Any, now: float) -> None:
        self.count += 1
        task = self.loop.create_task(self.fn(item), name=f"async_stream:{self.count}")
        self.running.add(task)
        task.add_done_callback(self._done)
        if self.ordered:
            self.pending.append((task, item))
        if self.timeout is not None:
            deadlines = self.deadlines
            while deadlines and deadlines[0][1].done():
                deadlines.popleft()
            deadlines.append((now + self.timeout, task, item))
            if self.timer is None:
                self.timer = self.loop.call_at(deadlines[0][0], self._expire)

    # -- settling -------------------------------------------------------------------------

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.running.discard(task)
        if task in self.killed:
            self.killed.discard(task)  # already settled as a timeout
            if not task.cancelled() and task.exception() is not None:
                _log.error(
                    "async_stream: %s failed after its timeout",
                    task.get_name(),
                    exc_info=task.exception(),
                )
        elif task.cancelled():
            if self.failure is None:
                self.failure = RuntimeError(f"async_stream: {task.get_name()} was cancelled")
        elif task.exception() is not None:
            if self.failure is None:
                self.failure = task.exception()
        elif not self.ordered:
            self.finished.append(task)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _pulled(self, pull: asyncio.Task[Any]) -> None:
        if not pull.cancelled():
            pull.exception()  # retrieved: raised from _pull, unless the stream is closing
        self._wake(None)

    def _wake(self, _: object) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _expire(self) -> None:
        self.timer = None
        deadlines = self.deadlines
        now = self.loop.time() + 1e-6
        while deadlines:
            deadline, task, item = deadlines[0]
            if task.done():
                deadlines.popleft()
                continue
            if deadline > now:
                self.timer = self.loop.call_at(deadline, self._expire)
                break
            deadlines.popleft()
            self._timed_out(task, item)
        self._wake(None)

    def _timed_out(self, task: asyncio.Task[Any], item: Any) -> None:
        if telemetry.enabled():
            meta = {"task": task.get_name(), "on_timeout": "kill_task" if self.kill else "raise"}
            telemetry.emit("tasks.stream.timeout", {"timeout": self.timeout}, meta)
        if not self.kill:
            if self.failure is None:
                self.failure = TaskTimeout(
                    f"async_stream: {task.get_name()} ran past its {self.timeout}s timeout"
                )
            return
        self.timed_out[task] = item
        self.killed.add(task)
        task.cancel()
        if not self.ordered:
            self.finished.append(task)

    def _outcome(self, task: asyncio.Task[Any], item: Any) -> Any:
        if task in self.timed_out:
            del self.timed_out[task]
            return Exit("timeout", item)
        return task.result()

    async def _close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        live = [t for t in self.running if not t.done()]
        if self.pull is not None and not self.pull.done():
            live.append(self.pull)
        if live:
            await shutdown(live, timeout=0, cancel_timeout=CLOSE_TIMEOUT, report=_report)


async def _anext(source: AsyncIterator[Any]) -> tuple[bool, Any]:
    try:
        return True, await anext(source)
    except StopAsyncIteration:
        return False, None


def _report(task: asyncio.Task[Any], phase: Phase) -> None:
    if telemetry.enabled():
        telemetry.emit("tasks.stream.timeout", {}, {"task": task.get_name(), "phase": phase})
    _log.error(
        "async_stream: %s would not stop when cancelled; it is left running "
        "(a coroutine cannot be killed)",
        task.get_name(),
    )
