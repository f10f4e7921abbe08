"""How a task ended, as values: :class:`Ok` with its result, or :class:`Exit` with a reason."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["Exit", "Ok", "outcome_of"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Ok(Generic[T]):
    """A task returned ``value``."""

    value: T


@dataclass(frozen=True, slots=True)
class Exit:
    """A task ended without a result.

    Attributes:
        reason: ``"timeout"`` (it ran past its timeout and was cancelled), ``"cancelled"``
            (something else cancelled it), or the exception it raised.
        input: For :func:`~underway.tasks.async_stream`, the item whose task exited;
            ``None`` elsewhere.
    """

    reason: BaseException | str
    input: Any = None


def outcome_of(task: asyncio.Task[T]) -> Ok[T] | Exit:
    """The outcome of a finished ``task`` (its exception counts as retrieved)."""
    if task.cancelled():
        return Exit("cancelled")
    exc = task.exception()
    if exc is not None:
        return Exit(exc)
    return Ok(task.result())
