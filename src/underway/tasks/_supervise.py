"""One incarnation of a supervisor: its children, its event loop, its restarts and its stops.

Everything a supervisor does to its children happens in its own task, one event at a
time: a child's exit, or a command (start, terminate, restart, delete a child). Starting a
child waits for its readiness, so exits that happen meanwhile wait their turn, as the
messages of an Erlang supervisor do.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from underway import _telemetry as telemetry
from underway.errors import ChildStartError, TooManyRestarts
from underway.tasks._policy import RestartIntensity, Strategy, restart_plan, should_restart
from underway.tasks._shutdown import Phase, shutdown
from underway.tasks.child import ChildInfo, ChildSpec, Ready, Status

_log = logging.getLogger("underway.tasks")

Command = tuple[Callable[["Supervision"], Awaitable[None]], "asyncio.Future[None]"]
Exited = tuple["Child", "asyncio.Task[Any]"]


class Child:
    """The supervisor's record of one child across its incarnations."""

    __slots__ = (
        "cut",
        "hurried",
        "ready",
        "restarts",
        "since",
        "spec",
        "status",
        "stopping",
        "task",
    )

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.task: asyncio.Task[Any] | None = None
        self.ready: Ready | None = None
        self.stopping = False
        self.cut: asyncio.Future[None] | None = None  # set during a stop: cuts it short
        self.hurried = False
        self.restarts = 0
        self.since = 0.0
        self.status: Status = "stopped"

    def info(self) -> ChildInfo:
        spec = self.spec
        return ChildInfo(spec.id, self.status, self.task, spec.kind, spec.restart, self.restarts)


async def _run_child(spec: ChildSpec, ready: Ready) -> Any:
    if spec.name is not None:
        spec.name.registry.register(spec.name.key, asyncio.current_task())
    if spec.ready:
        return await spec.start(*spec.args, ready=ready)
    return await spec.start(*spec.args)


class Supervision:
    """The state and the event loop of one run of a supervisor."""

    def __init__(
        self,
        name: str,
        specs: Sequence[ChildSpec],
        *,
        strategy: Strategy,
        intensity: RestartIntensity,
        cancel_timeout: float,
        hurried: bool = False,
    ) -> None:
        self.name = name
        self.strategy = strategy
        self.intensity = intensity
        self.cancel_timeout = cancel_timeout
        self.children = [Child(spec) for spec in specs]
        self.events: asyncio.Queue[Exited | Command] = asyncio.Queue()
        self.left_running: list[str] = []
        self.hurried = hurried

    # -- events ---------------------------------------------------------------------------

    async def start_all(self) -> None:
        """Start every child in order, each ready before the next.

        Raises:
            ChildStartError: A child failed to start (the caller stops those started).
        """
        for child in list(self.children):
            error = await self.start(child)
            if error is not None:
                child.task, child.status = None, "stopped"  # raised, not reported again
                raise ChildStartError(
                    f"supervisor {self.name!r}: child {child.spec.id!r} failed to start: {error!r}"
                ) from error

    async def loop(self) -> None:
        """Handle exits and commands until cancelled, or until restarts exceed the intensity.

        Raises:
            TooManyRestarts: The restart intensity was exceeded; children are still running
                (the caller stops them).
        """
        while True:
            event = await self.events.get()
            if isinstance(event[0], Child):
                await self._exited(*event)
            else:
                await self._command(*event)

    async def _command(
        self, body: Callable[[Supervision], Awaitable[None]], done: asyncio.Future[None]
    ) -> None:
        if done.done():
            return  # the caller gave up before its turn
        try:
            await body(self)
        except Exception as exc:
            if not done.done():
                done.set_exception(exc)
        except BaseException:
            if not done.done():
                done.set_exception(RuntimeError(f"supervisor {self.name!r} stopped meanwhile"))
            raise
        else:
            if not done.done():
                done.set_result(None)

    def fail_commands(self) -> None:
        """Tell callers of commands still queued that the supervisor stopped."""
        while not self.events.empty():
            event = self.events.get_nowait()
            if not isinstance(event[0], Child) and not event[1].done():
                event[1].set_exception(RuntimeError(f"supervisor {self.name!r} stopped meanwhile"))

    def _child_done(self, child: Child, ready: Ready, task: asyncio.Task[Any]) -> None:
        ready._ended()
        if child.task is task and not child.stopping:
            self.events.put_nowait((child, task))

    async def _exited(self, child: Child, task: asyncio.Task[Any]) -> None:
        if child.task is not task or child not in self.children:
            return  # stale: the child was stopped or replaced meanwhile
        child.task = None
        error = _exit_error(task)
        self._report_exit(child, error)
        if not should_restart(child.spec.restart, normal=error is None):
            if child.spec.restart == "temporary":
                self.children.remove(child)
            else:
                child.status = "stopped"
            return
        child.status = "restarting"
        if not self.intensity.add(asyncio.get_running_loop().time()):
            self._give_up(child, error)
        to_stop, to_start = restart_plan(self.strategy, self.children, child)
        for other in to_stop:
            await self.stop(other)
            if other.spec.restart == "temporary":
                self.children.remove(other)
                to_start.remove(other)
            else:
                other.status = "restarting"
        for other in to_start:
            other.restarts += 1
            _emit("tasks.child.restart", {"restarts": other.restarts}, self._meta(other))
            _log.info("supervisor %r restarting child %r", self.name, other.spec.id)
            if await self.start(other) is not None:
                return  # its exit is queued: handled as a crash, with the same strategy

    def _give_up(self, child: Child, error: BaseException | None) -> None:
        intensity = self.intensity
        meta = {**self._meta(child), "max_restarts": intensity.max_restarts}
        _emit("tasks.supervisor.give_up", {"restarts": intensity.recent}, meta)
        _log.error(
            "supervisor %r gives up: more than %d restarts in %ss (last: child %r)",
            self.name,
            intensity.max_restarts,
            intensity.max_seconds,
            child.spec.id,
        )
        raise TooManyRestarts(
            f"supervisor {self.name!r}: more than {intensity.max_restarts} restarts in "
            f"{intensity.max_seconds}s (last: child {child.spec.id!r})"
        ) from error

    # -- one child ------------------------------------------------------------------------

    async def start(self, child: Child) -> BaseException | None:
        """Start one incarnation of ``child``; return the error if it failed to start."""
        spec = child.spec
        ready = Ready()
        loop = asyncio.get_running_loop()
        task = loop.create_task(_run_child(spec, ready), name=f"{self.name}/{spec.id}")
        child.task, child.ready, child.stopping = task, ready, False
        child.status, child.since = "running", time.monotonic()
        task.add_done_callback(functools.partial(self._child_done, child, ready))
        if spec.ready and not await ready._wait():
            error = _exit_error(task)
            if error is None:  # returned before it was ready: ignored, as Erlang's `ignore`
                child.task, child.status = None, "stopped"
                _log.info("supervisor %r: child %r returned at start, ignored", self.name, spec.id)
                return None
            child.status = "restarting"
            # Not reported here: the caller raises it (ChildStartError), or, for a restart,
            # its exit is queued and reported as a crash.
            _log.debug("supervisor %r: child %r failed to start: %r", self.name, spec.id, error)
            return error
        _emit("tasks.child.start", {"system_time": time.time()}, self._meta(child))
        return None

    async def stop(self, child: Child, *, hurried: bool = False) -> None:
        """Stop ``child`` honestly: ask, wait its shutdown, cancel, wait, report.

        With ``hurried`` (the supervisor's own stop after a hurry), the ask is followed at
        once by the child's ``on_hurry`` callback, or, if it has none, replaced by the
        cancellation. A stop that is not hurried when it begins (a restart's) is hurried
        only by a :meth:`hurry` while it is under way.
        """
        task = child.task
        if task is None:
            child.status = "stopped"
            return
        child.stopping, child.hurried = True, False
        cut = child.cut = asyncio.get_running_loop().create_future()
        ready = child.ready
        hook = ready._on_shutdown if ready is not None else None

        def ask(t: asyncio.Task[Any]) -> None:
            if hook is None:
                t.cancel()
            else:
                try:
                    hook()
                except Exception:
                    _log.exception(
                        "supervisor %r: the shutdown hook of child %r failed; cancelling it",
                        self.name,
                        child.spec.id,
                    )
                    t.cancel()
            if hurried:
                self._hurry(child)

        if hurried and _on_hurry(child) is None:
            cut.set_result(None)
        try:
            stuck = await shutdown(
                [task],
                timeout=child.spec.shutdown,
                cancel_timeout=self.cancel_timeout,
                ask=ask,
                report=functools.partial(self._report_stuck, child),
                cut=cut,
            )
        finally:
            child.cut = None
        child.task, child.status = None, "stopped"
        if stuck:
            self.left_running.append(child.spec.id)
            return
        self._stopped(child, task)

    def _stopped(self, child: Child, task: asyncio.Task[Any]) -> None:
        """Report how ``task``, which the supervisor stopped, ended (its error is retrieved)."""
        error = _exit_error(task)
        if error is not None and not isinstance(error, asyncio.CancelledError):
            _log.error(
                "supervisor %r: child %r failed while stopping",
                self.name,
                child.spec.id,
                exc_info=error,
            )
        _emit(
            "tasks.child.stop", self._duration(child), {**self._meta(child), "reason": "shutdown"}
        )

    def hurry(self) -> None:
        """Cut short the stops under way and the supervisor's own stop (``Supervisor.hurry``).

        The stops of restarts that begin afterwards are not hurried.
        """
        self.hurried = True
        for child in self.children:
            if child.cut is not None:
                self._hurry(child)

    def _hurry(self, child: Child) -> None:
        """Hurry ``child``'s stop under way: its ``on_hurry`` callback once, else cancel now."""
        cut = child.cut
        if cut is None or cut.done() or child.hurried:
            return
        child.hurried = True
        callback = _on_hurry(child)
        if callback is not None:
            try:
                callback()
            except Exception:
                _log.exception(
                    "supervisor %r: the hurry hook of child %r failed; cancelling it",
                    self.name,
                    child.spec.id,
                )
            else:
                return
        cut.set_result(None)

    async def terminate(self) -> None:
        """Stop every child in reverse start order.

        If cancelled meanwhile (the stop's bound passed), every child still running is
        cancelled at once and given ``cancel_timeout`` seconds, then ``CancelledError``
        propagates.
        """
        try:
            for child in reversed(self.children):
                await self.stop(child, hurried=self.hurried)
        except asyncio.CancelledError:
            # Children that ended meanwhile (their exits are not handled any more) are
            # reported with the others.
            live = {c.task: c for c in self.children if c.task is not None}
            for child in live.values():
                child.stopping = True

            def report(task: asyncio.Task[Any], phase: Phase) -> None:
                self._report_stuck(live[task], task, phase)

            stuck = await shutdown(
                live, timeout=0, cancel_timeout=self.cancel_timeout, report=report
            )
            for task, child in live.items():
                if child.task is task:
                    child.task, child.status = None, "stopped"
                if task in stuck:
                    self.left_running.append(child.spec.id)
                else:
                    self._stopped(child, task)
            raise

    def find(self, child_id: str) -> Child:
        """The child with ``child_id``.

        Raises:
            LookupError: No such child.
        """
        for child in self.children:
            if child.spec.id == child_id:
                return child
        raise LookupError(f"supervisor {self.name!r} has no child {child_id!r}")

    # -- reports --------------------------------------------------------------------------

    def _meta(self, child: Child) -> dict[str, Any]:
        return {"supervisor": self.name, "child": child.spec.id}

    def _duration(self, child: Child) -> dict[str, float]:
        return {"duration": time.monotonic() - child.since}

    def _report_exit(self, child: Child, error: BaseException | None) -> None:
        if error is None:
            _emit(
                "tasks.child.stop", self._duration(child), {**self._meta(child), "reason": "normal"}
            )
            return
        _emit("tasks.child.crash", self._duration(child), {**self._meta(child), "error": error})
        if isinstance(error, asyncio.CancelledError):
            _log.error(
                "supervisor %r: child %r was cancelled, not by its supervisor",
                self.name,
                child.spec.id,
            )
        else:
            _log.error("supervisor %r: child %r crashed", self.name, child.spec.id, exc_info=error)

    def _report_stuck(self, child: Child, task: asyncio.Task[Any], phase: Phase) -> None:
        meta = {**self._meta(child), "phase": phase, "shutdown": child.spec.shutdown}
        _emit("tasks.child.timeout", {}, meta)
        if phase == "shutdown":
            _log.warning(
                "supervisor %r: child %r did not stop within %ss; cancelling it",
                self.name,
                child.spec.id,
                child.spec.shutdown,
            )
        else:
            _log.error(
                "supervisor %r: child %r would not stop even when cancelled; it is left "
                "running (a coroutine cannot be killed)",
                self.name,
                child.spec.id,
            )


def _on_hurry(child: Child) -> Callable[[], object] | None:
    return child.ready._on_hurry if child.ready is not None else None


def _exit_error(task: asyncio.Task[Any]) -> BaseException | None:
    """How ``task`` ended: ``None`` if it returned, else its exception (a cancellation too)."""
    if task.cancelled():
        return asyncio.CancelledError(f"task {task.get_name()} was cancelled")
    return task.exception()


def _emit(event: str, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
    if telemetry.enabled():
        telemetry.emit(event, measurements, metadata)
