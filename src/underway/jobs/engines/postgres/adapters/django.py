"""Django: the connection of a ``postgresql`` database, inside ``transaction.atomic()``.

Use ``worker.enqueue_sync(args, conn=connection)`` in the atomic block. The statements run
through ``connection.cursor()``, so they go where the ORM's queries go (Django's execute
wrappers and query logging included), and join its transaction: Django commits or rolls
back the jobs with the rest of the block. Django's connections are synchronous: from async
code, call ``enqueue_sync`` through ``sync_to_async``.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from underway.errors import ConfigError
from underway.jobs.engines.postgres.adapters._dispatch import AppConnection

__all__ = ["adapt"]


def adapt(conn: Any) -> AppConnection | None:
    """The :class:`AppConnection` of a Django connection; ``None`` for other objects."""
    wrapper = importlib.import_module("django.db.backends.base.base").BaseDatabaseWrapper
    proxy = importlib.import_module("django.utils.connection").ConnectionProxy
    if not isinstance(conn, wrapper | proxy):
        return None
    if conn.vendor != "postgresql":
        raise ConfigError(f"Django's connection passed as conn is {conn.vendor}, not PostgreSQL")

    def execute(sql: str, params: Sequence[Any] | None) -> list[tuple[Any, ...]]:
        with conn.cursor() as cursor:
            cursor.execute(sql.replace("%b", "%s"), tuple(params or ()))
            found = cursor.fetchall() if cursor.description is not None else []
        return [tuple(r) for r in found]

    errors = importlib.import_module("django.db").Error
    return AppConnection("Django connection", execute=execute, errors=(errors,))
