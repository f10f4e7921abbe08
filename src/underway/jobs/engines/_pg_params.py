"""Parameters of the PostgreSQL engine's batched statements: one array per column."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from underway.jobs.engines._rows import UndecodableRow
from underway.jobs.job import JobState
from underway.jobs.outcomes import Ack

__all__ = ["ack_batches", "discard_params"]

_STORED_SHOWN = 200  # characters of an undecodable value quoted in the job's error


def ack_batches(acks: Sequence[Ack], node: str) -> list[tuple[str, dict[str, Any]]]:
    """One (statement, array parameters) per kind of outcome present in ``acks``."""
    done: dict[str, list[Any]] = {"id": [], "at": [], "result": [], "attempt": []}
    snoozed: dict[str, list[Any]] = {"id": [], "scheduled_at": [], "attempt": []}
    failed: dict[str, list[Any]] = {
        k: [] for k in ("id", "state", "at", "attempt", "scheduled_at", "error", "traceback")
    }
    for a in acks:
        if a.state is JobState.COMPLETED:
            _append(done, id=a.job_id, at=float(a.at), result=a.result, attempt=a.attempt)
        elif a.snoozed:
            at = float(a.scheduled_at if a.scheduled_at is not None else a.at)
            _append(snoozed, id=a.job_id, scheduled_at=at, attempt=a.attempt)
        else:
            _append(
                failed,
                id=a.job_id,
                state=a.state.value,
                at=float(a.at),
                attempt=a.attempt,
                scheduled_at=None if a.scheduled_at is None else float(a.scheduled_at),
                error=a.error,
                traceback=a.traceback,
            )
    batches = []
    for name, params in (("ack_completed", done), ("ack_failed", failed), ("ack_snoozed", snoozed)):
        if params["id"]:
            batches.append((name, {**params, "node": node}))
    return batches


def _append(columns: dict[str, list[Any]], **values: Any) -> None:
    for key, value in values.items():
        columns[key].append(value)


def discard_params(exc: UndecodableRow, claim: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters of ``discard_undecodable`` for a row this node claimed in ``claim``."""
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
