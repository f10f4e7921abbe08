"""asyncpg: the application's ``Connection`` (or a pool's connection), in its transaction.

Use ``await worker.enqueue(args, conn=conn)`` inside ``async with conn.transaction():``.
Every parameter has an explicit cast in the statements, so asyncpg's types are fixed by the
server: text as ``str``, integers as ``int``, times as aware ``datetime``, arrays as lists.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Sequence
from typing import Any

from underway.jobs.engines.postgres._insert import numbered
from underway.jobs.engines.postgres.adapters._dispatch import AppConnection

__all__ = ["adapt"]


@functools.lru_cache(maxsize=32)
def _numbered(sql: str) -> str:
    return numbered(sql)


def adapt(conn: Any) -> AppConnection | None:
    """The :class:`AppConnection` of an asyncpg connection; ``None`` for other objects."""
    asyncpg = importlib.import_module("asyncpg")
    proxy = importlib.import_module("asyncpg.pool").PoolConnectionProxy
    if not isinstance(conn, asyncpg.Connection | proxy):
        return None

    async def aexecute(sql: str, params: Sequence[Any] | None) -> list[tuple[Any, ...]]:
        records = await conn.fetch(_numbered(sql), *(params or ()))
        return [tuple(r) for r in records]

    return AppConnection(
        "asyncpg Connection",
        aexecute=aexecute,
        errors=(asyncpg.PostgresError, asyncpg.InterfaceError),
    )
