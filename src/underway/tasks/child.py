"""What a supervisor starts: child specs, the readiness handle, and the child report."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import KW_ONLY, dataclass
from typing import Any, Literal

from underway.errors import ConfigError
from underway.tasks._policy import RESTARTS, Restart, check_choice, check_timeout
from underway.tasks.registry import Via

__all__ = ["ChildInfo", "ChildSpec", "Ready", "supervisor_spec"]

Kind = Literal["worker", "supervisor"]
Status = Literal["running", "restarting", "stopped"]


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """How a supervisor starts, restarts and stops one child.

    Args:
        id: Unique among the supervisor's children.
        start: An ``async`` function; ``start(*args)`` runs the child, once per (re)start.
            With ``ready=True`` it is called as ``start(*args, ready=ready)``.
        args: Positional arguments for ``start``.
        restart: ``"permanent"`` (always restarted), ``"transient"`` (restarted only after
            an exception or a cancellation the supervisor did not cause) or
            ``"temporary"`` (never restarted, and forgotten once it exits).
        shutdown: Seconds between asking the child to stop and cancelling it (``None``:
            wait forever, the default for supervisors; ``0``: cancel at once).
        ready: The child signals readiness by calling ``ready()``; the supervisor starts
            the next child only then. A child that raises first fails to start; one that
            returns first is *ignored*: kept in the list, not running, not restarted.
            A child without ``ready`` counts as started as soon as its task exists.
        name: ``registry.via(key)``: each incarnation registers its task under ``key``
            while it runs.
        kind: ``"worker"`` or ``"supervisor"``, as reported by ``which_children()``.

    Raises:
        ConfigError: An option is invalid.
    """

    id: str
    start: Callable[..., Awaitable[Any]]
    _: KW_ONLY
    args: tuple[Any, ...] = ()
    restart: Restart = "permanent"
    shutdown: float | None = 5.0
    ready: bool = False
    name: Via | None = None
    kind: Kind = "worker"

    def __post_init__(self) -> None:
        where = f"child {self.id!r}"
        if not isinstance(self.id, str) or not self.id:
            raise ConfigError(f"a child's id must be a non-empty string, got {self.id!r}")
        if not callable(self.start):
            raise ConfigError(f"{where}: start must be an async function, got {self.start!r}")
        if not isinstance(self.args, tuple):
            raise ConfigError(f"{where}: args must be a tuple, got {type(self.args).__name__}")
        check_choice(where, "restart", self.restart, RESTARTS)
        object.__setattr__(self, "shutdown", check_timeout(where, "shutdown", self.shutdown))
        if not isinstance(self.ready, bool):
            raise ConfigError(f"{where}: ready must be True or False, got {self.ready!r}")
        if self.name is not None and not isinstance(self.name, Via):
            raise ConfigError(f"{where}: name must come from registry.via(key), got {self.name!r}")
        check_choice(where, "kind", self.kind, ("worker", "supervisor"))


class Ready:
    """Given to a child started with ``ready=True``: call it once the child can serve.

    The child may also register how it wants to be asked to stop with :meth:`on_shutdown`
    (by default the ask is a cancellation), and how to cut its stop short when its
    supervisor is hurried with :meth:`on_hurry` (by default it is cancelled at once).
    """

    __slots__ = ("_future", "_on_hurry", "_on_shutdown")

    def __init__(self) -> None:
        self._future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._on_shutdown: Callable[[], object] | None = None
        self._on_hurry: Callable[[], object] | None = None

    def __call__(self) -> None:
        """Signal that the child is ready (later calls do nothing)."""
        if not self._future.done():
            self._future.set_result(True)

    @property
    def is_set(self) -> bool:
        """Whether the child has signalled readiness."""
        fut = self._future
        return fut.done() and not fut.cancelled() and fut.result()

    def on_shutdown(self, callback: Callable[[], object]) -> None:
        """Ask the child to stop by calling ``callback()`` instead of cancelling it.

        The callback must not block; the child then has its ``shutdown`` seconds to end
        before it is cancelled anyway.
        """
        self._on_shutdown = callback

    def on_hurry(self, callback: Callable[[], object]) -> None:
        """Cut this child's stop short by calling ``callback()`` instead of cancelling it.

        When its supervisor is hurried (:meth:`Supervisor.hurry`, a second SIGTERM or
        SIGINT under :func:`~underway.tasks.run`), a child being stopped, or asked to stop
        later by the supervisor's own stop, gets ``callback()`` once, just after it was
        asked to stop; the stop of a restart that begins after the hurry is not hurried.
        The callback must not block; the child then has what is left of its ``shutdown``
        seconds to end. A child that registered none is cancelled at once instead.
        """
        self._on_hurry = callback

    def _ended(self) -> None:
        if not self._future.done():
            self._future.set_result(False)

    async def _wait(self) -> bool:
        return await self._future


@dataclass(frozen=True, slots=True)
class ChildInfo:
    """One child of a supervisor, as :meth:`Supervisor.which_children` reports it.

    Attributes:
        id: The child's id.
        status: ``"running"``, ``"restarting"`` (exited, its restart is pending or failed
            and will be retried) or ``"stopped"``.
        task: The running incarnation's task, or ``None``.
        kind: ``"worker"`` or ``"supervisor"``.
        restart: The restart type from its spec.
        restarts: How often this supervisor has restarted it.
    """

    id: str
    status: Status
    task: asyncio.Task[Any] | None
    kind: Kind
    restart: Restart
    restarts: int


def supervisor_spec(
    id: str, run: Callable[..., Awaitable[Any]], restart: Restart, shutdown: float | None
) -> ChildSpec:
    """The spec of something that supervises tasks of its own, run as a child.

    It is ready once its own start is done, and ``shutdown`` defaults to ``None`` at the
    call sites: it bounds its own children's stop.
    """
    return ChildSpec(id, run, ready=True, restart=restart, shutdown=shutdown, kind="supervisor")
