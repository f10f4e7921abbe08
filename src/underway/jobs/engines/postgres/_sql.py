"""PostgreSQL statements of one schema: named SQL files with the schema and channels filled in.

The files in ``postgres/sql`` name tables as ``{schema}.underway_jobs``; ``{columns}`` stands
for the selected job columns (JSON as text, times as epoch seconds, as
:func:`~underway.jobs.engines._rows.job_from_row` reads them), ``{j_columns}`` for the same
of the table aliased ``j``, ``{channel}`` / ``{signal_channel}`` for the notification
channels, and ``{job_filter}`` for the conditions of a job filter
(``sql/fragments/job_filter.sql``). This module imports no driver.
"""

from __future__ import annotations

import functools
import hashlib
import re

from underway.jobs.engines._sql import fragment, query, uncommented

__all__ = ["SCHEMA_RE", "Statements", "channels", "columns", "quote_ident", "quote_literal"]

SCHEMA_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_CHANNEL_MAX = 63  # PostgreSQL truncates identifiers and refuses longer channel names
_TIMES = ("inserted_at", "scheduled_at", "attempted_at")
_FINISH_TIMES = ("completed_at", "discarded_at", "cancelled_at")


def quote_ident(name: str) -> str:
    """``name`` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """``text`` as a quoted SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


@functools.cache
def columns(alias: str = "") -> str:
    """The job columns in the order of ``_rows.COLUMNS``, converted for ``job_from_row``."""
    p = f"{alias}." if alias else ""

    def epoch(col: str) -> str:
        return f"date_part('epoch', {p}{col})"

    return ", ".join(
        [
            *(f"{p}{c}" for c in ("id", "state", "queue", "worker")),
            *(f"{p}{c}::text" for c in ("args", "meta", "tags", "errors")),
            *(f"{p}{c}" for c in ("attempt", "max_attempts", "priority")),
            *(epoch(c) for c in _TIMES),
            f"{p}attempted_by",
            *(epoch(c) for c in _FINISH_TIMES),
            f"{p}result::text",
        ]
    )


def channels(schema: str) -> tuple[str, str]:
    """The notification channels of ``schema``: new jobs, and control signals."""
    found = []
    for kind in ("jobs", "signals"):
        name = f"underway_{kind}.{schema}"
        if len(name) > _CHANNEL_MAX:
            digest = hashlib.sha1(schema.encode(), usedforsecurity=False).hexdigest()[:16]
            name = f"underway_{kind}.{schema[:24]}.{digest}"
        found.append(name)
    return found[0], found[1]


class Statements:
    """Every PostgreSQL statement of the engine for one schema, read once."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.schema_sql = quote_ident(schema)
        self.channel, self.signal_channel = channels(schema)
        self._texts: dict[str, str] = {}

    def __getitem__(self, name: str) -> str:
        """The statement of ``postgres/sql/<name>.sql`` for this schema."""
        text = self._texts.get(name)
        if text is None:
            text = self._texts[name] = self._fill(query("postgres", name))
        return text

    def _fill(self, text: str) -> str:
        return (
            text.replace("{schema}", self.schema_sql)
            .replace("{columns}", columns())
            .replace("{j_columns}", columns("j"))
            .replace("{signal_channel}", quote_literal(self.signal_channel))
            .replace("{channel}", quote_literal(self.channel))
            .replace("{job_filter}", uncommented(fragment("postgres", "job_filter")).strip())
        )
