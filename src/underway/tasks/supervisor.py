"""The supervisor: starts children in order, restarts them by strategy, stops them in reverse."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any

from underway import _telemetry as telemetry
from underway.errors import ChildStartError, ConfigError
from underway.tasks._policy import (
    STRATEGIES,
    Restart,
    RestartIntensity,
    Strategy,
    check_choice,
    check_seconds,
)
from underway.tasks._shutdown import Phase, shutdown
from underway.tasks._supervise import Child, Supervision
from underway.tasks.child import ChildInfo, ChildSpec, Ready, supervisor_spec

__all__ = ["Supervisor"]

_log = logging.getLogger("underway.tasks")


class Supervisor:
    """Runs child tasks, restarts them when they exit, and stops them in order.

    Children start in the order given, each one ready before the next starts, and stop in
    reverse order. When a child exits and its restart type says so, the strategy decides
    what restarts: ``"one_for_one"`` that child alone, ``"one_for_all"`` every child (the
    others are stopped first, in reverse order), ``"rest_for_one"`` that child and those
    started after it. More than ``max_restarts`` restarts within ``max_seconds`` means
    something is wrong that restarting will not fix: the supervisor stops its children in
    reverse order and raises :class:`~underway.errors.TooManyRestarts` to its parent (a
    parent supervisor restarts it, and counts that against its own intensity).

    Stopping a child is honest: ask (cancel it, or call its ``ready.on_shutdown`` hook),
    wait its ``shutdown`` seconds, cancel, wait ``cancel_timeout``, and if it still runs,
    report it and leave it running: a coroutine cannot be killed. A cancellation the
    supervisor caused never counts as a crash. :meth:`hurry` cuts those waits short.

    Run it with ``async with supervisor:``, ``await supervisor.start()`` and
    :meth:`stop`, ``await supervisor.run()``, as a child of another supervisor
    (:meth:`child_spec`), or at the root of a program with :func:`underway.tasks.run`.

    Args:
        children: Child specs, in start order; ids must be unique.
        strategy: ``"one_for_one"``, ``"one_for_all"`` or ``"rest_for_one"``.
        max_restarts: Restarts allowed within ``max_seconds`` before giving up.
        max_seconds: The restart intensity window, in seconds.
        cancel_timeout: Seconds to wait after cancelling a child before reporting it as
            one that would not stop.
        name: Name used in task names, logs and telemetry.

    Raises:
        ConfigError: An option is invalid.
    """

    def __init__(
        self,
        children: Sequence[ChildSpec] = (),
        *,
        strategy: Strategy = "one_for_one",
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        cancel_timeout: float = 1.0,
        name: str = "supervisor",
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"a supervisor's name must be a non-empty string, got {name!r}")
        where = f"supervisor {name}"
        self.name = name
        self.strategy: Strategy = check_choice(where, "strategy", strategy, STRATEGIES)
        RestartIntensity(max_restarts, max_seconds)  # validates both
        self.max_restarts = max_restarts
        self.max_seconds = float(max_seconds)
        self.cancel_timeout = check_seconds(where, "cancel_timeout", cancel_timeout)
        specs = list(children)
        for spec in specs:
            if not isinstance(spec, ChildSpec):
                raise ConfigError(f"{where}: children must be ChildSpec values, got {spec!r}")
        _check_unique(where, specs)
        self._specs = specs
        self._run: Supervision | None = None
        self._task: asyncio.Task[None] | None = None
        self._delivered = False
        self._hurried = False
        self.left_running: list[str] = []
        """Ids of children that would not stop during the last stop (still running)."""

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Supervisor {self.name!r} {self.strategy} {state} children={len(self._specs)}>"

    @property
    def running(self) -> bool:
        """Whether the supervisor is running (between its start and the end of its stop)."""
        return self._run is not None

    # -- running --------------------------------------------------------------------------

    async def run(self, *, ready: Ready | None = None) -> None:
        """Start the children and supervise them until cancelled; then stop them.

        Cancelling the task that runs this is how a supervisor is asked to stop: it stops
        its children in reverse order, then re-raises the ``CancelledError``. A second
        cancellation while it does so cancels every child still running at once.

        Args:
            ready: Called once every child has started (for nesting and for :meth:`start`).

        Raises:
            ChildStartError: A child failed to start; those already started were stopped.
            TooManyRestarts: The restart intensity was exceeded; every child was stopped.
            RuntimeError: The supervisor is already running.
        """
        if self._run is not None:
            raise RuntimeError(f"supervisor {self.name!r} is already running")
        run = self._run = Supervision(
            self.name,
            self._specs,
            strategy=self.strategy,
            intensity=RestartIntensity(self.max_restarts, self.max_seconds),
            cancel_timeout=self.cancel_timeout,
            hurried=self._hurried,
        )
        self.left_running = run.left_running
        if ready is not None:
            ready.on_hurry(self.hurry)  # a parent's hurry reaches this supervisor's children
        try:
            await run.start_all()
            _emit("tasks.supervisor.start", {"children": len(run.children)}, self.name)
            if ready is not None:
                ready()
            await run.loop()
        finally:
            try:
                await run.terminate()
            finally:
                self._run, self._hurried = None, False
                run.fail_commands()
                _emit("tasks.supervisor.stop", {"left_running": len(run.left_running)}, self.name)

    def hurry(self) -> None:
        """Cut every grace period of this supervisor's stop short (a second signal does this).

        Hurried are the stops of children under way when it is called (a restart's too)
        and the supervisor's own stop, now or when it comes: a child that registered
        :meth:`Ready.on_hurry` gets that callback once and keeps what is left of its
        ``shutdown`` seconds; any other child is cancelled at once instead of waiting its
        ``shutdown`` seconds. Nested supervisors hurry their own children the same way.
        The restarts that begin after the call are not hurried: the siblings they stop are
        asked and given their ``shutdown`` seconds as usual. Called while the supervisor
        runs (or before it starts), it makes its next stop hurried; the run after that
        stop is not.
        """
        self._hurried = True
        run = self._run
        if run is not None:
            run.hurry()

    async def start(self) -> None:
        """Start the supervisor in a task of its own; return once every child has started.

        Raises:
            ChildStartError: A child failed to start; nothing is left running.
            RuntimeError: Already started.
        """
        if self._task is not None:
            raise RuntimeError(f"supervisor {self.name!r} is already started")
        ready = Ready()
        task = asyncio.get_running_loop().create_task(
            self.run(ready=ready), name=f"underway.tasks.supervisor:{self.name}"
        )
        self._task, self._delivered = task, False
        task.add_done_callback(lambda t: ready._ended())
        task.add_done_callback(_retrieve)  # a give-up is logged when it happens
        try:
            started = await ready._wait()
        except asyncio.CancelledError:
            await self._stop(None)
            raise
        if not started:
            self._task = None
            if task.cancelled():
                raise ChildStartError(f"supervisor {self.name!r} was cancelled while starting")
            error = self._error(task)
            raise error or ChildStartError(f"supervisor {self.name!r} ended while starting")

    async def stop(self, *, timeout: float | None = None) -> None:
        """Stop the children in reverse order (each within its own ``shutdown``), then return.

        Args:
            timeout: Bound on the whole stop, in seconds (``None``: only the children's own
                bounds). Past it, every child still running is cancelled at once.

        If the caller is cancelled meanwhile, every child still running is cancelled at once
        and the ``CancelledError`` propagates.

        Raises:
            TooManyRestarts: The supervisor had given up before this stop, and no call to
                :meth:`wait` raised it yet.
        """
        error = await self._stop(timeout)
        if error is not None:
            raise error

    async def wait(self) -> None:
        """Wait until the supervisor stops (started with :meth:`start`).

        Raises:
            TooManyRestarts: It gave up.
        """
        task = self._task
        if task is None:
            return
        await asyncio.wait([task])
        error = self._error(task)
        if error is not None:
            raise error

    async def __aenter__(self) -> Supervisor:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        error = await self._stop(None)
        if error is not None and exc is None:
            raise error

    async def _stop(self, timeout: float | None) -> BaseException | None:
        task = self._task
        if task is None:
            return None
        try:
            # Once cancelled twice, the supervisor gives its children cancel_timeout seconds
            # to end: it gets as long again for itself.
            await shutdown(
                [task], timeout=timeout, cancel_timeout=2 * self.cancel_timeout, report=self._report
            )
        finally:
            self._task = None
        return self._error(task)

    def _error(self, task: asyncio.Task[None]) -> BaseException | None:
        """The error the run ended with, once (later calls see ``None``)."""
        if not task.done() or task.cancelled() or self._delivered:
            return None
        error = task.exception()
        if error is not None:
            self._delivered = True
        return error

    def _report(self, task: asyncio.Task[Any], phase: Phase) -> None:
        if phase == "cancel":
            _log.error("supervisor %r would not stop even when cancelled", self.name)

    # -- children -------------------------------------------------------------------------

    def child_spec(
        self,
        *,
        id: str | None = None,
        restart: Restart = "permanent",
        shutdown: float | None = None,
    ) -> ChildSpec:
        """A spec to run this supervisor as a child of another (it is ready once its own
        children are; ``shutdown`` defaults to ``None``: it bounds its children itself)."""
        return supervisor_spec(id or self.name, self.run, restart, shutdown)

    def which_children(self) -> list[ChildInfo]:
        """Every child, in start order, with its status (empty when not running)."""
        run = self._run
        return [] if run is None else [c.info() for c in run.children]

    def count_children(self) -> dict[str, int]:
        """``{"specs", "active", "supervisors", "workers"}``, as Elixir's ``count_children``."""
        infos = self.which_children()
        return {
            "specs": len(infos),
            "active": sum(1 for i in infos if i.status == "running"),
            "supervisors": sum(1 for i in infos if i.kind == "supervisor"),
            "workers": sum(1 for i in infos if i.kind == "worker"),
        }

    async def start_child(self, spec: ChildSpec) -> None:
        """Add ``spec`` after the other children and start it (gone again if this restarts).

        Raises:
            ConfigError: The id is taken.
            ChildStartError: It failed to start (it is not added).
        """
        if not isinstance(spec, ChildSpec):
            raise ConfigError(f"start_child takes a ChildSpec, got {spec!r}")

        async def command(run: Supervision) -> None:
            _check_unique(f"supervisor {self.name!r}", [*(c.spec for c in run.children), spec])
            child = Child(spec)
            run.children.append(child)
            error = await run.start(child)
            if error is not None:
                run.children.remove(child)
                child.stopping = True
                raise ChildStartError(f"child {spec.id!r} failed to start: {error!r}") from error

        await self._command(command)

    async def terminate_child(self, child_id: str) -> None:
        """Stop a child (honestly, as at shutdown); it stays listed unless temporary.

        Raises:
            LookupError: No such child.
        """

        async def command(run: Supervision) -> None:
            child = run.find(child_id)
            await run.stop(child)
            if child.spec.restart == "temporary":
                run.children.remove(child)

        await self._command(command)

    async def restart_child(self, child_id: str) -> None:
        """Start again a child that is not running.

        Raises:
            LookupError: No such child.
            RuntimeError: It is running.
            ChildStartError: It failed to start.
        """

        async def command(run: Supervision) -> None:
            child = run.find(child_id)
            if child.task is not None:
                raise RuntimeError(f"child {child_id!r} of supervisor {self.name!r} is running")
            error = await run.start(child)
            if error is not None:
                child.stopping = True
                child.task, child.status = None, "stopped"
                raise ChildStartError(f"child {child_id!r} failed to start: {error!r}") from error

        await self._command(command)

    async def delete_child(self, child_id: str) -> None:
        """Forget a child that is not running.

        Raises:
            LookupError: No such child.
            RuntimeError: It is running.
        """

        async def command(run: Supervision) -> None:
            child = run.find(child_id)
            if child.task is not None:
                raise RuntimeError(f"child {child_id!r} of supervisor {self.name!r} is running")
            run.children.remove(child)

        await self._command(command)

    async def _command(self, body: Callable[[Supervision], Awaitable[None]]) -> None:
        run = self._run
        if run is None:
            raise RuntimeError(f"supervisor {self.name!r} is not running")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        run.events.put_nowait((body, done))
        await done


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


def _check_unique(where: str, specs: Sequence[ChildSpec]) -> None:
    seen: set[str] = set()
    for spec in specs:
        if spec.id in seen:
            raise ConfigError(f"{where}: two children have the id {spec.id!r}")
        seen.add(spec.id)


def _emit(event: str, measurements: dict[str, Any], name: str) -> None:
    if telemetry.enabled():
        telemetry.emit(event, measurements, {"supervisor": name})
