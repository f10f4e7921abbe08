"""A registry of unique names, each owned by the task that registered it.

A name disappears when its owner task ends, however it ends, so a lookup never finds a
stopped server or child. Pass ``registry.via(key)`` as the ``name`` of a
:class:`~underway.tasks.ChildSpec` or a :class:`~underway.tasks.Server` to have each
incarnation register itself when it starts.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from underway.errors import AlreadyRegistered

__all__ = ["Registry", "Via"]


@dataclass(frozen=True, slots=True)
class Via:
    """A name in a registry, to give as the ``name`` of a child spec or a server.

    Attributes:
        registry: Where the name is registered.
        key: The name.
    """

    registry: Registry
    key: Hashable

    def __str__(self) -> str:
        return f"{self.registry.name}:{self.key}"


class Registry:
    """Unique names for running tasks and servers, removed when their owner task ends.

    Args:
        name: Name used in messages and logs.
    """

    def __init__(self, name: str = "registry") -> None:
        self.name = name
        self._entries: dict[Hashable, tuple[asyncio.Task[Any], Any]] = {}

    def __repr__(self) -> str:
        return f"<Registry {self.name!r} names={len(self)}>"

    def via(self, key: Hashable) -> Via:
        """A reference to ``key`` in this registry (for ``ChildSpec(name=...)`` or servers)."""
        return Via(self, key)

    def register(self, key: Hashable, value: Any) -> None:
        """Register ``key`` to ``value``, owned by the calling task until it ends.

        Raises:
            AlreadyRegistered: Another task that is still running holds ``key``.
            RuntimeError: Called outside a task.
        """
        try:
            task = asyncio.current_task()
        except RuntimeError:  # no running event loop
            task = None
        if task is None:
            raise RuntimeError("Registry.register must be called from a task (it owns the name)")
        entry = self._entries.get(key)
        if entry is not None and not entry[0].done() and entry[0] is not task:
            owner = entry[0].get_name()
            raise AlreadyRegistered(
                f"{key!r} is already registered in registry {self.name!r} by task {owner}"
            )
        self._entries[key] = (task, value)
        task.add_done_callback(functools.partial(self._owner_done, key))

    def unregister(self, key: Hashable) -> bool:
        """Remove ``key`` if the calling task owns it; return whether it did."""
        entry = self._entries.get(key)
        if entry is None or entry[0] is not asyncio.current_task():
            return False
        del self._entries[key]
        return True

    def lookup(self, key: Hashable, default: Any = None) -> Any:
        """The value registered under ``key``, or ``default`` if none (or its owner ended)."""
        entry = self._live(key)
        return default if entry is None else entry[1]

    def owner(self, key: Hashable) -> asyncio.Task[Any] | None:
        """The task that owns ``key``, or ``None``."""
        entry = self._live(key)
        return None if entry is None else entry[0]

    def keys(self) -> list[Hashable]:
        """Every registered name whose owner still runs."""
        return [k for k, (task, _) in list(self._entries.items()) if not task.done()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, Hashable) and self._live(key) is not None

    def __len__(self) -> int:
        return len(self.keys())

    def _live(self, key: Hashable) -> tuple[asyncio.Task[Any], Any] | None:
        entry = self._entries.get(key)
        if entry is not None and entry[0].done():
            del self._entries[key]
            return None
        return entry

    def _owner_done(self, key: Hashable, task: asyncio.Task[Any]) -> None:
        entry = self._entries.get(key)
        if entry is not None and entry[0] is task:
            del self._entries[key]
