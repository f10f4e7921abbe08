"""Parameters of the PostgreSQL engine's statements for a
:class:`~underway.jobs.engines.base.JobFilter`: those of ``sql/fragments/job_filter.sql``.
"""

from __future__ import annotations

import json
from typing import Any

from underway.jobs.engines.base import JobFilter

__all__ = ["filter_params"]


def filter_params(where: JobFilter) -> dict[str, Any]:
    """The named parameters of the filter fragment for ``where`` (``None``: no condition)."""
    return {
        "states": [s.value for s in where.states] or None,
        "queues": list(where.queues) or None,
        "workers": list(where.workers) or None,
        "tags": json.dumps(list(where.tags)) if where.tags else None,
        "node": where.node,
        "inserted_after": where.inserted_after,
        "inserted_before": where.inserted_before,
        "finished_after": where.finished_after,
        "finished_before": where.finished_before,
        "args": where.args,
        "meta": where.meta,
        "ids": list(where.ids) or None,
        "before_id": where.before_id,
    }
