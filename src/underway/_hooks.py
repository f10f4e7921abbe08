"""Entering instrumentation hooks so that a failing hook never fails the work it wraps.

The hooks of jobs (:mod:`underway.jobs._hooks`) and pipelines
(:mod:`underway.pipelines._hooks`) run code that is not the application's: a tracer, its
span processors, an exporter. Such code failing must not fail an enqueue whose jobs were
inserted, a job that completed, or a batch that was handled. :func:`enter_guarded` enters
each hook so that an exception it raises, entering or exiting, is logged and goes no
further; the work's own exception (and cancellation) still goes through it untouched, and a
hook cannot swallow it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, ExitStack
from types import TracebackType
from typing import Any

__all__ = ["enter_guarded"]

_log = logging.getLogger("underway.hooks")


class _Guarded:
    """One hook's context manager, entered and exited with its failures logged."""

    __slots__ = ("_hook", "_manager")

    def __init__(self, hook: Callable[..., AbstractContextManager[object]]) -> None:
        self._hook = hook
        self._manager: AbstractContextManager[object] | None = None

    def enter(self, args: tuple[Any, ...]) -> None:
        try:
            manager = self._hook(*args)
            manager.__enter__()
        except Exception:
            _log.exception("the hook %r failed as it was entered; the work goes on", self._hook)
        else:
            self._manager = manager

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        manager, self._manager = self._manager, None
        if manager is None:
            return
        try:
            manager.__exit__(kind, exc, traceback)
        except Exception as raised:
            if raised is not exc:  # the work's own exception, re-raised: it goes on as is
                _log.exception("the hook %r failed as it was exited; ignored", self._hook)


def enter_guarded(
    stack: ExitStack, hooks: Iterable[Callable[..., AbstractContextManager[object]]], *args: Any
) -> None:
    """Enter ``hook(*args)`` for each of ``hooks`` on ``stack``, in order, each guarded.

    A hook that raises (an ``Exception``) as it is entered is logged and left out; one that
    raises as it is exited is logged and the block's outcome stands. What a hook returns
    from its exit is ignored: it never suppresses the block's exception.
    """
    for hook in hooks:
        guarded = _Guarded(hook)
        guarded.enter(args)
        stack.enter_context(guarded)
