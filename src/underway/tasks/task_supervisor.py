"""Task supervisor: fire-and-forget tasks and awaitable tasks, owned and stopped together."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar, TypeVarTuple

from underway import _telemetry as telemetry
from underway._aio import Service
from underway.errors import ConfigError, TaskExited, TaskTimeout, TooManyChildren
from underway.tasks._policy import Restart, check_int, check_seconds, check_timeout
from underway.tasks._shutdown import Phase, shutdown
from underway.tasks.child import ChildSpec, Ready, supervisor_spec
from underway.tasks.outcome import Exit, Ok, outcome_of

__all__ = ["TaskHandle", "TaskSupervisor", "yield_many"]

_log = logging.getLogger("underway.tasks")

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

_SWEEP_MIN = 64


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


class TaskSupervisor(Service):
    """Starts tasks that nobody restarts, keeps them alive and reports their crashes.

    :meth:`start_child` is fire-and-forget: the supervisor holds a strong reference to the
    task until it ends, and logs (and emits ``tasks.task.crash`` for) any exception.
    :meth:`async_nolink` returns a :class:`TaskHandle` whose result the caller awaits; the
    task is not linked to the caller, so a crash or a caller that stops waiting leaves the
    other side alone. :meth:`stop` cancels every task still running, waits up to
    ``shutdown_timeout`` for them to end, cancels again, waits ``cancel_timeout``, and
    reports any that would not stop; :meth:`hurry` cuts the ``shutdown_timeout`` wait short.

    Args:
        max_children: Most tasks running at once (``None``: no limit); past it,
            :meth:`start_child` and :meth:`async_nolink` raise
            :class:`~underway.errors.TooManyChildren`.
        shutdown_timeout: Seconds the tasks get to end after the cancellation that asks
            them to stop (``None``: wait forever).
        cancel_timeout: Seconds to wait after the second cancellation before reporting a
            task as one that would not stop.
        name: Name used in task names, logs and telemetry.

    Raises:
        ConfigError: An option is invalid.
    """

    def __init__(
        self,
        *,
        max_children: int | None = None,
        shutdown_timeout: float | None = 5.0,
        cancel_timeout: float = 1.0,
        name: str = "tasks",
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"a task supervisor's name must be a non-empty string, got {name!r}")
        where = f"task supervisor {name}"
        self.name = name
        self.max_children = (
            None if max_children is None else check_int(where, "max_children", max_children, 1)
        )
        self.shutdown_timeout = check_timeout(where, "shutdown_timeout", shutdown_timeout)
        self.cancel_timeout = check_seconds(where, "cancel_timeout", cancel_timeout)
        self._children: set[asyncio.Task[Any]] = set()
        self._sweep_at = _SWEEP_MIN
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Future[None] | None = None
        self._cut: asyncio.Future[None] | None = None
        self._hurried = False
        self.left_running: list[asyncio.Task[Any]] = []
        """Tasks that would not stop during the last stop (still running)."""

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<TaskSupervisor {self.name!r} {state} children={len(self._children)}>"

    @property
    def running(self) -> bool:
        """Whether tasks can be started (between :meth:`start` and :meth:`stop`)."""
        return self._loop is not None

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the supervisor for new tasks.

        Raises:
            RuntimeError: Already started.
        """
        if self._loop is not None:
            raise RuntimeError(f"task supervisor {self.name!r} is already started")
        self._loop = asyncio.get_running_loop()
        self._stopped = self._loop.create_future()
        self.left_running = []

    async def stop(self) -> None:
        """Refuse new tasks, then stop every running task (see the class docstring)."""
        if self._loop is None:
            return
        self._loop = None
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)
        # Take the tasks now: a restart (under a supervisor) may start new ones meanwhile.
        # Those that would not stop are kept alive elsewhere.
        children, self._children = self._children, set()
        self._sweep_at = _SWEEP_MIN
        cut = self._cut = asyncio.get_running_loop().create_future()
        if self._hurried:
            cut.set_result(None)
        try:
            stuck = await shutdown(
                children,
                timeout=self.shutdown_timeout,
                cancel_timeout=self.cancel_timeout,
                report=self._report_stuck,
                cut=cut,
            )
        finally:
            self._cut, self._hurried = None, False
        self.left_running = list(stuck)

    def hurry(self) -> None:
        """Cut the ``shutdown_timeout`` of a stop short: its tasks are cancelled again now.

        Called while running, it makes the next stop cancel its tasks only once and wait
        ``cancel_timeout``. A supervisor running this as a child calls it when hurried.
        """
        self._hurried = True
        cut = self._cut
        if cut is not None and not cut.done():
            cut.set_result(None)

    async def run(self, *, ready: Ready | None = None) -> None:
        """Run until cancelled (then :meth:`stop`) or stopped: how a supervisor runs this."""
        await self.start()
        stopped = self._stopped
        assert stopped is not None
        if ready is not None:
            ready.on_hurry(self.hurry)
            ready()
        try:
            await asyncio.shield(stopped)
        finally:
            await self.stop()

    def child_spec(
        self,
        *,
        id: str | None = None,
        restart: Restart = "permanent",
        shutdown: float | None = None,
    ) -> ChildSpec:
        """A spec to run this under a :class:`~underway.tasks.Supervisor` (a restart starts
        it empty; ``shutdown`` defaults to ``None``: it bounds its tasks itself)."""
        return supervisor_spec(id or self.name, self.run, restart, shutdown)

    # -- tasks ----------------------------------------------------------------------------

    def start_child(self, fn: Callable[[*Ts], Awaitable[T]], *args: *Ts) -> asyncio.Task[T]:
        """Run ``fn(*args)`` in a new task that the supervisor keeps until it ends.

        ``fn`` is called inside the task, so an error it raises, even at once, is reported
        as that task's crash.

        Returns:
            The task (awaiting or cancelling it is allowed; an exception it ends with is
            reported here either way).

        Raises:
            TooManyChildren: ``max_children`` tasks are running.
            RuntimeError: The supervisor is not started.
        """
        loop = self._loop
        if loop is None:
            raise RuntimeError(f"task supervisor {self.name!r} is not running")
        children = self._children
        if len(children) >= self._sweep_at:
            self._sweep()
        if self.max_children is not None and len(children) >= self.max_children:
            self._sweep()
            if len(children) >= self.max_children:
                raise TooManyChildren(
                    f"task supervisor {self.name!r} already runs {self.max_children} tasks"
                )
        task = loop.create_task(
            self._supervise(fn, args), name=f"{self.name}:{getattr(fn, '__name__', 'task')}"
        )
        children.add(task)
        if telemetry.enabled():
            meta = {"supervisor": self.name, "task": task.get_name()}
            telemetry.emit("tasks.task.start", {"system_time": time.time()}, meta)
        return task

    def async_nolink(self, fn: Callable[[*Ts], Awaitable[T]], *args: *Ts) -> TaskHandle[T]:
        """Run ``fn(*args)`` in a new task and return a handle to await its result.

        Raises:
            TooManyChildren: ``max_children`` tasks are running.
            RuntimeError: The supervisor is not started.
        """
        return TaskHandle(self.start_child(fn, *args), self)

    def children(self) -> list[asyncio.Task[Any]]:
        """The tasks running now."""
        return [t for t in self._children if not t.done()]

    async def _supervise(self, fn: Callable[..., Awaitable[T]], args: tuple[Any, ...]) -> T:
        # A wrapper rather than a done callback: no extra callback per task, so starting
        # a task costs about what create_task does.
        task = asyncio.current_task()
        assert task is not None
        try:
            result = await fn(*args)
        except asyncio.CancelledError:
            if telemetry.enabled():
                self._emit("tasks.task.stop", task, reason="cancelled")
            raise
        except Exception as exc:
            task.add_done_callback(_retrieve)  # reported here: not again as "never retrieved"
            _log.error("task %s of %r crashed", task.get_name(), self.name, exc_info=exc)
            if telemetry.enabled():
                self._emit("tasks.task.crash", task, error=exc)
            raise
        finally:
            self._children.discard(task)
        if telemetry.enabled():
            self._emit("tasks.task.stop", task, reason="normal")
        return result

    def _sweep(self) -> None:
        """Forget tasks that ended without running (cancelled before their first step)."""
        children = self._children
        children.difference_update([t for t in children if t.done()])
        self._sweep_at = max(_SWEEP_MIN, 2 * len(children))

    def _emit(self, event: str, task: asyncio.Task[Any], **meta: Any) -> None:
        telemetry.emit(event, {}, {"supervisor": self.name, "task": task.get_name(), **meta})

    def _report_stuck(self, task: asyncio.Task[Any], phase: Phase) -> None:
        meta = {"supervisor": self.name, "task": task.get_name(), "phase": phase}
        if telemetry.enabled():
            telemetry.emit("tasks.task.timeout", {}, meta)
        if phase == "cancel":
            _log.error(
                "task %s of %r would not stop even when cancelled; it is left running "
                "(a coroutine cannot be killed)",
                task.get_name(),
                self.name,
            )


class TaskHandle(Generic[T]):
    """A task started with :meth:`TaskSupervisor.async_nolink`, to await, poll or stop.

    Attributes:
        task: The underlying task.
    """

    __slots__ = ("_ignored", "_supervisor", "task")

    def __init__(self, task: asyncio.Task[T], supervisor: TaskSupervisor) -> None:
        self.task = task
        self._supervisor = supervisor
        self._ignored = False

    def __repr__(self) -> str:
        return f"<TaskHandle {self.task.get_name()} done={self.task.done()}>"

    def done(self) -> bool:
        """Whether the task has ended."""
        return self.task.done()

    async def await_(self, timeout: float | None = 5.0) -> T:
        """Wait for the result (``None``: no limit). The caller being cancelled, or the
        timeout, leaves the task running.

        Raises:
            TaskTimeout: No result within ``timeout``.
            TaskExited: The task was cancelled.
            Exception: Whatever the task raised.
        """
        task = self._check()
        if not task.done():
            await asyncio.wait([task], timeout=timeout)
            if not task.done():
                self._timed_out(timeout)
                raise TaskTimeout(f"task {task.get_name()} gave no result within {timeout}s")
        if task.cancelled():
            raise TaskExited(f"task {task.get_name()} was cancelled", "cancelled")
        return task.result()

    async def yield_(self, timeout: float | None = 5.0) -> Ok[T] | Exit | None:
        """Wait up to ``timeout`` for the task; ``None`` if still running (it keeps running,
        and may be yielded again).

        Returns:
            :class:`~underway.tasks.Ok` with the result, :class:`~underway.tasks.Exit`
            with the reason it failed, or ``None``.
        """
        task = self._check()
        if not task.done():
            await asyncio.wait([task], timeout=timeout)
        return outcome_of(task) if task.done() else None

    async def shutdown(self, timeout: float | None = 5.0) -> Ok[T] | Exit | None:
        """Stop the task: cancel, wait ``timeout``, cancel again, wait, report.

        Returns:
            :class:`~underway.tasks.Ok` or :class:`~underway.tasks.Exit` if the task had
            ended (or ended with a result or an error while stopping), ``None`` if it was
            stopped (or would not stop: then it is reported and left running).
        """
        task = self.task
        if task.done():
            return outcome_of(task)
        sup = self._supervisor
        stuck = await shutdown(
            [task], timeout=timeout, cancel_timeout=sup.cancel_timeout, report=sup._report_stuck
        )
        if stuck or task.cancelled():
            return None
        return outcome_of(task)

    def ignore(self) -> Ok[T] | Exit | None:
        """Stop caring about the result: the task keeps running and its crash is still
        reported, but this handle cannot be awaited any more.

        Returns:
            The outcome if the task already ended, else ``None``.
        """
        self._ignored = True
        return outcome_of(self.task) if self.task.done() else None

    def _check(self) -> asyncio.Task[T]:
        if self._ignored:
            raise RuntimeError(f"task {self.task.get_name()} was ignored; it cannot be awaited")
        return self.task

    def _timed_out(self, timeout: float | None) -> None:
        if telemetry.enabled():
            meta = {"supervisor": self._supervisor.name, "task": self.task.get_name()}
            telemetry.emit("tasks.task.timeout", {"timeout": timeout}, {**meta, "phase": "await"})


async def yield_many(
    handles: Sequence[TaskHandle[Any]], timeout: float | None = 5.0
) -> list[tuple[TaskHandle[Any], Ok[Any] | Exit | None]]:
    """Wait up to ``timeout`` (in all) for several tasks; tasks still running keep running.

    Returns:
        ``(handle, outcome)`` in the order given; the outcome is ``None`` for a task
        still running.
    """
    pending = {h.task for h in handles if not h.task.done()}
    if pending:
        await asyncio.wait(pending, timeout=timeout)
    return [(h, outcome_of(h.task) if h.task.done() else None) for h in handles]
