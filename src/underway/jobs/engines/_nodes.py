"""Heartbeat rows as both engines read them for :meth:`Overview.node_rows`."""

from __future__ import annotations

import json
from typing import Any

from underway.jobs.engines.base import NodeRow

__all__ = ["node_row"]


def node_row(
    name: str, started_at: Any, heartbeat_at: Any, age: Any, meta: Any, leader: Any
) -> NodeRow:
    """One row of ``node_rows.sql``; a meta that is not a JSON object reads as empty (a row
    written by hand or by a version that recorded none)."""
    return NodeRow(
        name=str(name),
        started_at=float(started_at),
        heartbeat_at=float(heartbeat_at),
        age=max(0.0, float(age)),
        meta=_meta(meta),
        leader=bool(leader),
    )


def _meta(value: Any) -> dict[str, Any]:
    if isinstance(value, str | bytes):
        try:
            value = json.loads(value or "{}")
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}
