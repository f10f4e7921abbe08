"""The one thing a worker needs of its app: a place to enqueue jobs. A leaf module."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from underway.jobs.job import Job, JobSpec

__all__ = ["Enqueuer"]


class Enqueuer(Protocol):
    """Inserts jobs built with ``worker.new(...)``; :class:`~underway.jobs.Jobs` is one."""

    async def enqueue_many(self, jobs: Iterable[JobSpec], *, conn: Any = None) -> list[Job[Any]]:
        """Insert ``jobs`` (in ``conn``'s transaction when given); return them in order."""
        ...

    def enqueue_many_sync(self, jobs: Iterable[JobSpec], *, conn: Any = None) -> list[Job[Any]]:
        """:meth:`enqueue_many` for synchronous callers."""
        ...
