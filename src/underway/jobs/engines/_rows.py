"""Turning stored rows into Job values, the same way for every engine.

A row another program wrote can hold text that is not JSON where JSON belongs. Decoding
such a row raises :class:`UndecodableRow`, which names the column, so that an engine can
set that one job aside instead of failing every job fetched with it. Administrative
look-ups decode leniently instead: the broken field is replaced by a marker holding the
stored text (``{"__undecodable__": "<text>"}`` for args, meta and result, a single
``"__undecodable__: <text>"`` tag, a single error entry saying so, ``None`` for a time), so
the job can still be listed, inspected and cancelled.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from underway.jobs.job import Job, JobError, JobState, to_datetime

__all__ = ["COLUMNS", "UNDECODABLE", "UndecodableRow", "discard_params", "job_from_row"]

COLUMNS = (
    "id, state, queue, worker, args, meta, tags, errors, attempt, max_attempts, priority, "
    "inserted_at, scheduled_at, attempted_at, attempted_by, completed_at, discarded_at, "
    "cancelled_at, result"
)

UNDECODABLE = "__undecodable__"
"""The key (or prefix) that marks a stored field that could not be decoded."""

_STATES = {s.value: s for s in JobState}
_UNKNOWN_TIME = datetime.fromtimestamp(0, UTC)


class UndecodableRow(ValueError):
    """A stored job row has a column that cannot be decoded.

    Attributes:
        job_id: The job's id.
        column: The column that failed.
        reason: Why it failed (the decoder's message).
        raw: The stored value of the column.
    """

    def __init__(self, job_id: int, column: str, reason: str, raw: Any) -> None:
        super().__init__(f"undecodable job row: {column}: {reason}")
        self.job_id = job_id
        self.column = column
        self.reason = reason
        self.raw = raw


def _meta(text: str) -> dict[str, Any]:
    if text == "{}":
        return {}
    value = json.loads(text)
    if not isinstance(value, dict):
        raise TypeError(f"expected a JSON object, got {type(value).__name__}")
    return value


def _tags(text: str) -> tuple[str, ...]:
    if text == "[]":
        return ()
    value = json.loads(text)
    if not isinstance(value, list):
        raise TypeError(f"expected a JSON array, got {type(value).__name__}")
    return tuple(str(t) for t in value)


def _errors(text: str) -> tuple[JobError, ...]:
    if text == "[]":
        return ()
    return tuple(
        JobError(
            attempt=int(e.get("attempt") or 0),
            at=to_datetime(float(e.get("at") or 0.0)),  # type: ignore[arg-type]
            error=str(e.get("error")),
            traceback=e.get("traceback"),
        )
        for e in json.loads(text)
    )


def _result(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _state(text: str) -> JobState:
    return _STATES[text]


def _marked(raw: Any) -> dict[str, Any]:
    return {UNDECODABLE: raw}


def _marked_errors(raw: Any, reason: str) -> tuple[JobError, ...]:
    return (JobError(attempt=0, at=_UNKNOWN_TIME, error=f"{UNDECODABLE}: {reason}: {raw}"),)


# (index in COLUMNS, column name, decoder, lenient replacement from (raw text, reason))
_Fallback = Callable[[Any, str], Any] | None
_FIELDS: tuple[tuple[int, str, Callable[[Any], Any], _Fallback], ...] = (
    (1, "state", _state, None),
    (4, "args", json.loads, lambda raw, _: _marked(raw)),
    (5, "meta", _meta, lambda raw, _: _marked(raw)),
    (6, "tags", _tags, lambda raw, _: (f"{UNDECODABLE}: {raw}",)),
    (7, "errors", _errors, _marked_errors),
    (11, "inserted_at", to_datetime, lambda raw, _: None),
    (12, "scheduled_at", to_datetime, lambda raw, _: None),
    (13, "attempted_at", to_datetime, lambda raw, _: None),
    (15, "completed_at", to_datetime, lambda raw, _: None),
    (16, "discarded_at", to_datetime, lambda raw, _: None),
    (17, "cancelled_at", to_datetime, lambda raw, _: None),
    (18, "result", _result, lambda raw, _: _marked(raw)),
)
_NAMES = tuple(column for _, column, _, _ in _FIELDS)  # each is also a Job field


def _decode_each(row: Sequence[Any], lenient: bool) -> list[Any]:
    """Decode field by field: raise for the first broken one, or replace each one."""
    values = []
    for index, column, decode, fallback in _FIELDS:
        raw = row[index]
        try:
            values.append(decode(raw))
        except Exception as exc:  # any failure of a decoder means the stored text is bad
            reason = str(exc) or type(exc).__name__
            if not lenient or fallback is None:
                raise UndecodableRow(row[0], column, reason, raw) from exc
            values.append(fallback(raw, reason))
    return values


def job_from_row(row: Sequence[Any], *, conflict: bool = False, lenient: bool = False) -> Job[Any]:
    """A Job from a row selected with :data:`COLUMNS`.

    Args:
        row: The selected values.
        conflict: Mark the job as the existing duplicate of a unique insert.
        lenient: Replace fields that cannot be decoded by markers (see the module
            docstring) instead of raising.

    Raises:
        UndecodableRow: A column cannot be decoded (and ``lenient`` is false).
    """
    try:
        values = [decode(row[index]) for index, _, decode, _ in _FIELDS]
    except Exception:  # find the broken column, then raise for it or mark it
        values = _decode_each(row, lenient)
    return Job(
        id=row[0],
        queue=row[2],
        worker=row[3],
        attempt=row[8],
        max_attempts=row[9],
        priority=row[10],
        attempted_by=row[14],
        conflict=conflict,
        **dict(zip(_NAMES, values, strict=True)),
    )


_STORED_SHOWN = 200  # characters of an undecodable value quoted in the job's error


def discard_params(exc: UndecodableRow, claim: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters of every engine's ``discard_undecodable`` for a row claimed in ``claim``."""
    stored = repr(exc.raw)
    if len(stored) > _STORED_SHOWN:
        stored = stored[:_STORED_SHOWN] + "..."
    return {
        "id": exc.job_id,
        "node": claim["node"],
        "now": claim["now"],
        "error": f"{exc} (stored text: {stored})",
        "reset_errors": exc.column == "errors",
    }
