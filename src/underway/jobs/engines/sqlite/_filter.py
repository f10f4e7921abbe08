"""A :class:`~underway.jobs.engines.base.JobFilter` as SQLite conditions: the blocks of
``sql/fragments/job_filter.sql`` whose parameter is given, joined, and their parameters.
Listing and every bulk action take their ``{job_filter}`` from here.

SQLite plans a statement before its parameters are bound, so a condition written to be
skipped when its parameter is NULL would still stop it from using an index: only the
conditions given go into the statement.

Lists go as JSON arrays. The args and meta containment, ``@>`` on PostgreSQL, is spelt out
as leaf conditions the fragment checks with ``json_type``/``json_extract``/``json_each``:
an object's members are followed down to their values (an empty object only asks for an
object there), a scalar must be equal and of the same JSON type (``1`` and ``1.0`` are one
number, ``true`` is not ``1``), and an array asks for each of its elements somewhere in the
array at that place (an empty array only asks for an array).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from typing import Any

from underway.jobs.engines._sql import fragment, uncommented
from underway.jobs.engines.base import JobFilter
from underway.jobs.engines.sqlite._thread import DIALECT

__all__ = ["filter_params", "filtered"]

_BLOCK_RE = re.compile(r"^-- :(\w+)$")


def filtered(statement: str, where: JobFilter) -> tuple[str, dict[str, Any]]:
    """``statement`` with its ``{job_filter}`` made of the conditions of ``where``, and the
    parameters of those conditions."""
    params = filter_params(where)
    blocks = _blocks()
    conditions = [f"({blocks[name]}\n)" for name, value in params.items() if value is not None]
    sql = statement.replace("{job_filter}", "\n   AND ".join(conditions) or "1")
    return sql, {k: v for k, v in params.items() if v is not None}


@functools.cache
def _blocks() -> dict[str, str]:
    """The fragment's conditions by the parameter that heads each block."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in fragment(DIALECT, "job_filter").splitlines():
        match = _BLOCK_RE.match(line.strip())
        if match:
            current = blocks.setdefault(match[1], [])
        elif current is not None:
            current.append(line)
    return {name: uncommented("\n".join(lines)).strip() for name, lines in blocks.items()}


def filter_params(where: JobFilter) -> dict[str, Any]:
    """The parameters of the fragment's conditions for ``where`` (``None``: not given)."""
    leaves = [
        *_leaves("args", _object(where.args)),
        *_leaves("meta", _object(where.meta)),
    ]
    return {
        "states": _array([s.value for s in where.states]),
        "queues": _array(where.queues),
        "workers": _array(where.workers),
        "tags": _array(where.tags),
        "node": where.node,
        "ids": _array(where.ids),
        "before_id": where.before_id,
        "inserted_after": where.inserted_after,
        "inserted_before": where.inserted_before,
        "finished_after": where.finished_after,
        "finished_before": where.finished_before,
        "contains": json.dumps(leaves) if leaves else None,
    }


def _array(values: Any) -> str | None:
    return json.dumps(list(values)) if values else None


def _object(text: str | None) -> dict[str, Any]:
    return {} if text is None else dict(json.loads(text))


def _leaves(column: str, obj: dict[str, Any], path: str = "$") -> Iterator[list[Any]]:
    """``[column, path, kind, value, in_array]`` for every condition of ``obj``."""
    for key, value in obj.items():
        at = f'{path}."{key}"'  # keys holding a double quote are refused before this
        if isinstance(value, dict):
            if value:
                yield from _leaves(column, value, at)
            else:
                yield [column, at, "object", None, False]
        elif isinstance(value, list):
            if not value:
                yield [column, at, "array", None, False]
            for item in value:
                yield [column, at, *_scalar(item), True]
        else:
            yield [column, at, *_scalar(value), False]


def _scalar(value: Any) -> tuple[str, Any]:
    """The JSON type to match (``number`` for integer or real) and the value compared."""
    if value is None:
        return "null", None
    if isinstance(value, bool):
        return ("true" if value else "false"), None
    if isinstance(value, int | float):
        return "number", value
    return "text", str(value)
