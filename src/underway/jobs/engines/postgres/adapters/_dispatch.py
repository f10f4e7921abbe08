"""Finding the adapter of an application's connection by the library its class comes from."""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from underway.errors import ConfigError

__all__ = ["SUPPORTED", "AppConnection", "AsyncExecute", "Execute", "adapt", "library_of"]

Rows = list[tuple[Any, ...]]
Execute = Callable[[str, Sequence[Any] | None], Rows]
AsyncExecute = Callable[[str, Sequence[Any] | None], Awaitable[Rows]]

SUPPORTED = (
    "a psycopg Connection (enqueue_sync or enqueue) or AsyncConnection (enqueue), "
    "an asyncpg Connection (enqueue), a SQLAlchemy Session or Connection (enqueue_sync or "
    "enqueue), a SQLAlchemy AsyncSession or AsyncConnection (enqueue), or Django's "
    "connection on PostgreSQL (enqueue_sync)"
)
# top-level package of the object's class -> the module that adapts it
_ADAPTERS = {
    "asyncpg": "underway.jobs.engines.postgres.adapters.asyncpg",
    "sqlalchemy": "underway.jobs.engines.postgres.adapters.sqlalchemy",
    "django": "underway.jobs.engines.postgres.adapters.django",
}


@dataclass(frozen=True, slots=True)
class AppConnection:
    """An application's connection as the engine uses it.

    Attributes:
        kind: What it is, for messages ("asyncpg Connection").
        execute: Runs one statement in the connection's current transaction and returns
            its rows as tuples, for synchronous callers; ``None`` when the connection is
            asynchronous only.
        aexecute: The same for asynchronous callers; ``None`` when synchronous only.
        errors: The library's exceptions for a failed statement.
    """

    kind: str
    execute: Execute | None = None
    aexecute: AsyncExecute | None = None
    errors: tuple[type[BaseException], ...] = ()


def library_of(conn: Any) -> str | None:
    """The supported library that ``conn``'s class (or a base class) comes from, if any."""
    for cls in type(conn).__mro__:
        top = cls.__module__.partition(".")[0]
        if top in _ADAPTERS:
            return top
    return None


def adapt(conn: Any) -> AppConnection:
    """The :class:`AppConnection` for ``conn`` (only its own library is imported).

    Raises:
        ConfigError: ``conn`` is of no supported kind, or not connected to PostgreSQL.
    """
    library = library_of(conn)
    if library is not None:
        found: AppConnection | None = importlib.import_module(_ADAPTERS[library]).adapt(conn)
        if found is not None:
            return found
    raise ConfigError(
        f"conn for a PostgreSQL database must be {SUPPORTED}; got {type(conn).__qualname__} "
        f"from {type(conn).__module__}"
    )
