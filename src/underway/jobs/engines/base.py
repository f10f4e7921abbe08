"""The Engine protocol: everything the jobs runtime asks of a database.

The runtime never writes SQL itself; each engine implements these operations for its
database (SQL in ``<engine>/sql/*.sql``, versioned migrations in ``<engine>/migrations/``).
Times are epoch seconds (floats) at this boundary.

Runtime operations are coroutines. Administrative look-ups (``get_job``, ``list_jobs``,
``retry_job``, ``cancel_job``, ``counts``, the :class:`BulkActions`) and ``insert_sync`` are
plain calls so that the CLI, sync web apps and test helpers can use them; they block the
calling thread.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import InitVar, dataclass
from typing import Any, Protocol, runtime_checkable

from underway.jobs.job import Job, JobSpec, JobState
from underway.jobs.outcomes import Ack

__all__ = [
    "BULK_CANCEL_STATES",
    "BULK_DELETE_STATES",
    "BULK_RETRY_STATES",
    "BulkActions",
    "BulkResult",
    "CounterRow",
    "Engine",
    "Inserts",
    "JobCounters",
    "JobFilter",
    "NodeRow",
    "Overview",
    "StageResult",
    "Vacuums",
]


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Which jobs :meth:`Engine.list_jobs` returns (newest first) and the bulk actions of
    :class:`BulkActions` change: every condition given must hold, and one left empty
    (``()`` or ``None``) is no condition.

    Built already checked (by :mod:`underway.jobs._bulk`); each engine translates it in
    one place, its ``sql/fragments/job_filter.sql``, which listing and every bulk action
    share.

    Attributes:
        states: The job is in one of these states.
        queues: The job is in one of these queues (``queue=`` adds one).
        workers: The job is of one of these workers (``worker=`` adds one).
        tags: The job has every one of these tags.
        node: The job's last attempt ran (or runs) on this node (``attempted_by``).
        inserted_after: Inserted at or after this time (epoch seconds).
        inserted_before: Inserted before this time (epoch seconds).
        finished_after: Finished (completed, discarded or cancelled) at or after this time.
        finished_before: Finished before this time (a job not finished never matches a
            ``finished_*`` bound).
        args: JSON text of an object contained in the job's args (see ``_bulk``).
        meta: JSON text of an object contained in the job's meta.
        ids: The job's id is one of these.
        before_id: The job's id is below this one: the cursor of a page of the newest-first
            listing (the next page starts below the last id of the one before), which stays
            as cheap on page 1,000 as on page 1 and skips or repeats no job while new ones
            are inserted. Not used by bulk actions.
        limit: At most this many jobs listed (bulk actions change every match).
        offset: Skip this many jobs when listing (not used by bulk actions). Prefer
            ``before_id``: an offset reads and throws away every row it skips.
    """

    states: tuple[JobState, ...] = ()
    queues: tuple[str, ...] = ()
    workers: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    node: str | None = None
    inserted_after: float | None = None
    inserted_before: float | None = None
    finished_after: float | None = None
    finished_before: float | None = None
    args: str | None = None
    meta: str | None = None
    ids: tuple[int, ...] = ()
    before_id: int | None = None
    limit: int = 100
    offset: int = 0
    queue: InitVar[str | None] = None
    worker: InitVar[str | None] = None

    def __post_init__(self, queue: str | None, worker: str | None) -> None:
        if queue is not None:
            object.__setattr__(self, "queues", (*self.queues, queue))
        if worker is not None:
            object.__setattr__(self, "workers", (*self.workers, worker))

    @property
    def empty(self) -> bool:
        """Whether no condition is set: the filter matches every job."""
        return not (
            self.states
            or self.queues
            or self.workers
            or self.tags
            or self.args
            or self.meta
            or self.ids
            or any(
                v is not None
                for v in (
                    self.node,
                    self.inserted_after,
                    self.inserted_before,
                    self.finished_after,
                    self.finished_before,
                    self.before_id,
                )
            )
        )


@dataclass(frozen=True, slots=True)
class BulkResult:
    """What one bulk action changed.

    Attributes:
        queues: Jobs changed, by queue.
        executing: Ids of the jobs that were executing when they were cancelled (empty for
            the other actions).
    """

    queues: Mapping[str, int]
    executing: tuple[int, ...] = ()

    @property
    def count(self) -> int:
        """Jobs changed in all queues."""
        return sum(self.queues.values())


@dataclass(frozen=True, slots=True)
class StageResult:
    """What one staging pass made available, by queue."""

    queues: Mapping[str, int]

    @property
    def count(self) -> int:
        """Jobs made available in all queues."""
        return sum(self.queues.values())


class Inserts(Protocol):
    """Where enqueued jobs go: the half of the engine interface that ``Jobs.enqueue_many``
    uses. Every :class:`Engine` has it; the engine of the ``inline`` testing mode, which
    runs each job as it is enqueued and stores nothing, has only this half."""

    async def insert(self, specs: Sequence[JobSpec], *, conn: Any = None) -> list[Job[Any]]:
        """Insert jobs in as few statements as possible, in the order given.

        Unique duplicates are not inserted; the existing job comes back with
        ``conflict=True``. With ``conn`` the insert joins the caller's transaction.
        """

    def insert_sync(self, specs: Sequence[JobSpec], *, conn: Any = None) -> list[Job[Any]]:
        """:meth:`insert` for synchronous callers."""


class Engine(Inserts, Protocol):
    """A database that stores jobs. One engine object serves one node (process)."""

    url: str

    async def open(self) -> None:
        """Connect (and, for embedded databases, migrate). Raises ``DatabaseError``."""

    async def close(self) -> None:
        """Release connections and threads. Idempotent."""

    def migrate(self) -> list[str]:
        """Apply pending migrations; return the names applied (empty when current)."""

    async def fetch(
        self,
        queue: str,
        limit: int,
        node: str,
        now: float,
        *,
        workers: Collection[str] | None = None,
    ) -> list[Job[Any]]:
        """Claim up to ``limit`` available jobs of ``queue`` for ``node``, in start order.

        With ``workers``, only jobs of those workers are claimed: a node never takes a job
        it has no worker for, so another node that has it runs it.
        """

    async def ack(self, acks: Sequence[Ack], node: str) -> None:
        """Write the outcome of finished attempts, all in one transaction.

        An ack changes its job only if the job is still executing the same attempt on
        ``node``: a late ack from a run that was rescued meanwhile changes nothing.
        """

    async def stage(self, now: float, *, queue: str | None = None) -> StageResult:
        """Make scheduled and retryable jobs that are due available."""

    async def prune(self, max_age: Mapping[JobState, float], now: float, limit: int) -> int:
        """Delete up to ``limit`` finished jobs older than their state's age; return count."""

    async def heartbeat(self, node: str, now: float, meta: Mapping[str, Any]) -> None:
        """Record that ``node`` is alive."""

    async def forget_node(self, node: str) -> None:
        """Remove ``node``'s heartbeat row (on a clean stop)."""

    async def rescue(self, stale_before: float, now: float) -> dict[str, int]:
        """Return executing jobs of nodes silent since ``stale_before`` to their queues.

        Returns:
            Rescued jobs by queue (discarded ones, out of attempts, are not counted).
        """

    async def live_nodes(self, stale_before: float, now: float) -> dict[str, dict[str, Any]]:
        """The nodes that heartbeated since ``stale_before``, each with its heartbeat meta."""

    async def available_sample(
        self, queues: Collection[str], sample: int
    ) -> dict[tuple[str, str], int]:
        """How many of the next ``sample`` available jobs of each queue each worker has.

        Returns:
            Counts by ``(queue, worker)``; the cost is bounded by ``sample`` per queue.
        """

    async def executing(self, node: str) -> list[tuple[int, int]]:
        """``(job id, attempt)`` of the jobs the database records as executing on ``node``."""

    async def release(self, claims: Sequence[tuple[int, int]], node: str, now: float) -> int:
        """Hand back claims this node did not finish; the attempt is not counted.

        A claim is ``(job id, attempt)``: a job is released only while it is still
        executing that attempt on ``node``, never a newer claim of the same job.
        """

    async def wait_for_change(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for another process to write; return whether one did."""

    async def publish(self, signal: Mapping[str, Any]) -> None:
        """Send a control signal (a JSON object) to every node, this one included."""

    def publish_sync(self, signal: Mapping[str, Any]) -> None:
        """:meth:`publish` for synchronous callers, on the engine's synchronous path (no
        event loop, no new connection pool)."""

    async def signals(self) -> list[dict[str, Any]]:
        """Control signals published since the last call (the first call returns none)."""

    async def acquire_lease(self, name: str, node: str, ttl: float, now: float) -> bool:
        """Take or renew the lease ``name`` for ``node`` until ``now + ttl``.

        Returns:
            Whether ``node`` holds the lease now (another node's unexpired lease wins).
        """

    async def release_lease(self, name: str, node: str) -> None:
        """Give up the lease ``name`` if ``node`` holds it."""

    async def insert_for_slot(self, name: str, slot: float, spec: JobSpec) -> Job[Any] | None:
        """Insert ``spec`` for the cron entry ``name``'s ``slot``, once per slot ever.

        The slot is recorded in the same transaction as the insert, so a slot fires once
        across all nodes and leader changes; an older or already fired slot inserts
        nothing and returns ``None``.
        """

    def get_job(self, job_id: int) -> Job[Any] | None:
        """One job by id."""

    def list_jobs(self, where: JobFilter) -> list[Job[Any]]:
        """Jobs matching ``where``, newest first."""

    def retry_job(self, job_id: int, now: float) -> Job[Any] | None:
        """Make a job that is not executing available again now."""

    def cancel_job(self, job_id: int, now: float) -> Job[Any] | None:
        """Cancel a job that has not finished."""

    def counts(self) -> dict[tuple[str, JobState], int]:
        """Number of jobs by (queue, state)."""


@runtime_checkable
class Vacuums(Protocol):
    """An engine whose table of waiting and running jobs needs vacuuming while it runs.

    PostgreSQL leaves a dead row behind each claim and each ack; its autovacuum looks at a
    table at most once a minute, long enough at thousands of jobs a second for the fetch
    index to fill with entries of jobs that left. The leader of such an engine calls
    :meth:`vacuum` every few seconds. SQLite rewrites rows in place and needs none of it.
    """

    async def vacuum(self, dead_rows: int) -> int | None:
        """Vacuum the live jobs once ``dead_rows`` more rows are dead than the last left.

        Returns:
            The dead rows found when it vacuumed, ``None`` when there were too few.
        """


BULK_RETRY_STATES = (
    JobState.SCHEDULED,
    JobState.RETRYABLE,
    JobState.COMPLETED,
    JobState.DISCARDED,
    JobState.CANCELLED,
)
"""The states :meth:`BulkActions.retry_jobs` makes available (an executing job is left to
its run, an available one is already waiting)."""
BULK_CANCEL_STATES = (
    JobState.SCHEDULED,
    JobState.AVAILABLE,
    JobState.EXECUTING,
    JobState.RETRYABLE,
)
"""The states :meth:`BulkActions.cancel_jobs` cancels: every state but the finished ones."""
BULK_DELETE_STATES = (JobState.COMPLETED, JobState.DISCARDED, JobState.CANCELLED)
"""The states :meth:`BulkActions.delete_jobs` deletes: the finished ones only."""


@runtime_checkable
class BulkActions(Protocol):
    """An engine that changes every job matching a :class:`JobFilter` in one statement.

    Each action touches only the jobs of its states (``BULK_*_STATES``) among those
    matching; ``limit`` and ``offset`` of the filter are not used. The calls block the
    calling thread, like the other administrative calls.
    """

    def retry_jobs(self, where: JobFilter, now: float) -> BulkResult:
        """Make matching jobs available now, with at least one attempt left (as
        :meth:`Engine.retry_job`), and wake their queues on every node."""

    def cancel_jobs(self, where: JobFilter, now: float) -> BulkResult:
        """Cancel matching jobs that have not finished (as :meth:`Engine.cancel_job`).

        For each one that was executing, a ``cancel`` control signal is published in the
        same transaction, so the node running it interrupts it; their ids come back in
        :attr:`BulkResult.executing`.
        """

    def delete_jobs(self, where: JobFilter) -> BulkResult:
        """Delete matching finished jobs (and free the unique keys they still held)."""


@dataclass(frozen=True, slots=True)
class NodeRow:
    """One node's heartbeat row, as :meth:`Overview.node_rows` reads it.

    Attributes:
        name: The node's name.
        started_at: When its heartbeat row was first written (epoch seconds).
        heartbeat_at: Its last heartbeat (epoch seconds).
        age: Seconds since its last heartbeat, on the clock liveness is judged by (the
            server's on PostgreSQL).
        meta: What its last heartbeat recorded (see ``Heartbeat.meta``).
        leader: Whether it holds an unexpired leader lease.
    """

    name: str
    started_at: float
    heartbeat_at: float
    age: float
    meta: Mapping[str, Any]
    leader: bool


@runtime_checkable
class Overview(Protocol):
    """An engine that tells what the queues, nodes and cron entries are doing.

    Every call reads an index or a small table (nodes, leases, cron slots), never the
    history of finished jobs, so a dashboard may ask every few seconds whatever the table
    holds. The calls block the calling thread, like the other administrative calls.
    """

    def queue_counts(self) -> dict[tuple[str, JobState], int]:
        """Waiting and running jobs (scheduled, available, executing, retryable) by
        ``(queue, state)``; finished jobs are not counted."""

    def node_rows(self, lease: str, now: float) -> list[NodeRow]:
        """Every node with a heartbeat row, by name; ``leader`` tells who holds ``lease``."""

    def cron_slots(self, names: Collection[str]) -> dict[str, float]:
        """The last slot recorded for each of the cron entries ``names`` that has fired."""


CounterRow = tuple[float, str | None, str | None, int, int, int, int, int]
"""One row of :meth:`JobCounters.job_counters`: the start of the minute or bucket (epoch
seconds), queue and worker (``None`` when not grouped by), and the attempts completed,
failed (to be retried), discarded, cancelled and snoozed in it."""


@runtime_checkable
class JobCounters(Protocol):
    """An engine that counts finished attempts per minute, queue and worker.

    The counts are added by the statement (PostgreSQL) or transaction (SQLite) that writes
    a batch of acks, aggregated over the batch, and by the cancellations of
    :meth:`Engine.cancel_job` and :meth:`BulkActions.cancel_jobs`. An ack that changes no
    job (a late ack of a rescued run) counts nothing.
    """

    def job_counters(
        self,
        since: float,
        until: float,
        *,
        queues: tuple[str, ...] = (),
        workers: tuple[str, ...] = (),
        bucket: int = 60,
        by: tuple[str, ...] = ("queue", "worker"),
    ) -> list[CounterRow]:
        """The counters of the minutes starting in ``[since, until)``, of ``queues`` and
        ``workers`` only when given, ordered by minute, queue and worker (a plain call that
        blocks, like the other administrative calls).

        ``since`` starts a minute. The database adds the rows up per bucket of ``bucket``
        seconds (a multiple of 60) counted from ``since``, grouped by the dimensions of
        ``by`` only (of ``queue`` and ``worker``, in that order); an ungrouped dimension
        is ``None``. The rows are read through the primary key's range of minutes."""

    async def prune_counters(self, before: float, limit: int) -> int:
        """Delete up to ``limit`` counters of minutes before ``before``, oldest first,
        through the primary key; return how many went."""
