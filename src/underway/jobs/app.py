"""``Jobs``: the application object that holds workers, enqueues jobs and runs a node."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, Unpack, overload

from underway import _telemetry as telemetry
from underway import tasks
from underway._aio import Service, finish_despite_cancel
from underway.errors import ChildStartError, ConfigError, EnqueueError
from underway.jobs import _hooks as hooks
from underway.jobs._bulk import JobFilters, bulk, bulk_filter, job_filter
from underway.jobs._counters import MinuteCount, counter_query, read_counters
from underway.jobs._health import Health, check_args, check_health
from underway.jobs._overview import (
    CronInfo,
    NodeInfo,
    QueueInfo,
    cron_infos,
    node_infos,
    queue_infos,
)
from underway.jobs._queue_name import validate_queue_name
from underway.jobs._runtime.node import Node
from underway.jobs.config import NodeConfig, Pruning, check_queues
from underway.jobs.cron import Cron, check_options
from underway.jobs.engines import Engine, open_engine
from underway.jobs.engines._inline import InlineEngine
from underway.jobs.engines.base import Inserts, JobFilter
from underway.jobs.job import Job, JobSpec, JobState
from underway.jobs.worker import Worker, WorkerOptions
from underway.tasks import ChildSpec, Ready

if TYPE_CHECKING:
    from datetime import datetime

    from underway.tasks._policy import Restart

__all__ = ["Jobs", "TestingMode"]

TestingMode = Literal["inline", "manual"]
_log = logging.getLogger("underway.jobs")
_TESTING_MODES = (None, "inline", "manual")
_CONTROL_TIMEOUT = 30.0  # seconds a ``*_queue_sync`` call waits for the node's event loop


def _default_node_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Jobs(Service):
    """Durable jobs backed by a database: define workers, enqueue, and run a node.

    Args:
        database: Database URL. Default ``sqlite:///underway.db`` (a file beside the app).
        queues: Queue name to concurrency limit on this node. Default ``{"default": 10}``.
        testing: ``"inline"`` runs each job as it is enqueued, without a database;
            ``"manual"`` stores jobs but runs no queues (see :mod:`underway.jobs.testing`).
        node_name: This node's name in heartbeats and ``attempted_by``; it must be unique
            among running processes (two live nodes with one name would hand back each
            other's jobs). Default: host, pid and a random suffix.
        poll_interval: Seconds between polls when no notification arrives.
        stage_interval: Seconds between passes that make due scheduled jobs available.
        heartbeat_interval: Seconds between node heartbeats.
        rescue_after: Seconds without a heartbeat after which a node's jobs are rescued.
        shutdown_grace: Seconds running jobs get to finish on a graceful stop.
        leader_ttl: Seconds a leader's lease lasts without renewal; when the leader dies,
            another node takes over within this time.
        prune: How long finished jobs are kept; ``None`` turns the pruner off.

    Example::

        jobs = Jobs("sqlite:///app.db", queues={"default": 10, "mail": 20})

        @jobs.worker(queue="mail", max_attempts=5)
        async def send_welcome(job):
            ...

        await send_welcome.enqueue({"user_id": 7})
        async with jobs:          # runs a node until the block ends
            ...
    """

    def __init__(
        self,
        database: str = "sqlite:///underway.db",
        *,
        queues: Mapping[str, int] | None = None,
        testing: TestingMode | None = None,
        node_name: str | None = None,
        poll_interval: float = 1.0,
        stage_interval: float = 1.0,
        heartbeat_interval: float = 5.0,
        rescue_after: float = 60.0,
        shutdown_grace: float = 15.0,
        leader_ttl: float = 30.0,
        prune: Pruning | None = Pruning(),  # noqa: B008 - frozen value
    ) -> None:
        self.database = database
        self.engine: Engine = open_engine(database)
        self.workers: dict[str, Worker] = {}
        self.testing = testing
        self.config = NodeConfig(
            queues=check_queues({"default": 10} if queues is None else queues),
            name=node_name or _default_node_name(),
            poll_interval=poll_interval,
            stage_interval=stage_interval,
            heartbeat_interval=heartbeat_interval,
            rescue_after=rescue_after,
            shutdown_grace=shutdown_grace,
            leader_ttl=leader_ttl,
            prune=prune,
        )
        self.crontab: list[Cron] = []
        self._node: Node | None = None
        self._stopping: Node | None = None
        self._hurry = False
        self._stop_finished: asyncio.Future[None] | None = None
        self._stop_failure: Exception | None = None
        self.left_running = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"<Jobs {self.database} queues={self.config.queues}>"

    @property
    def testing(self) -> TestingMode | None:
        """The testing mode (``None`` in production)."""
        return self._testing

    @testing.setter
    def testing(self, mode: TestingMode | None) -> None:
        if mode not in _TESTING_MODES:
            raise ConfigError(f"testing must be 'inline', 'manual' or None, got {mode!r}")
        self._testing = mode
        self._inline: Inserts | None = InlineEngine(self.workers) if mode == "inline" else None

    @property
    def node(self) -> Node | None:
        """The running node, if this process runs one."""
        return self._node

    # -- workers ----------------------------------------------------------------------------

    @overload
    def worker(self, target: Callable[..., Any] | type, /) -> Worker: ...

    @overload
    def worker(
        self, **options: Unpack[WorkerOptions]
    ) -> Callable[[Callable[..., Any] | type], Worker]: ...

    def worker(
        self, target: Callable[..., Any] | type | None = None, **options: Any
    ) -> Worker | Callable[[Callable[..., Any] | type], Worker]:
        """Register a function or class as a worker (use as a decorator).

        A function (``async def`` or plain ``def``) takes the :class:`Job`; a class needs a
        ``perform(self, job)`` method and may define ``backoff(self, job)``. Plain
        functions run in a thread pool, never on the event loop.

        Options: ``name`` (default ``module.qualname``), ``queue`` ("default"),
        ``max_attempts`` (20), ``priority`` (0 first .. 9), ``tags``, ``timeout``
        (seconds), ``backoff`` (seconds or a function of the job), ``unique``
        (:class:`Unique`), ``args`` (a dataclass or pydantic model validated at enqueue and
        handed to the job typed) and ``record_result`` (store the returned value).

        Raises:
            ConfigError: An option is invalid, or the name is already registered.
        """

        def register(fn: Callable[..., Any] | type) -> Worker:
            w = Worker(fn, jobs=self, **options)
            if w.name in self.workers and self.workers[w.name].target is not fn:
                raise ConfigError(f"a worker named {w.name!r} is already registered")
            self.workers[w.name] = w
            return w

        return register if target is None else register(target)

    def add_cron(self, expression: str, worker: Worker, **options: Any) -> Cron:
        """Enqueue ``worker`` every time ``expression`` fires (on the leader, once per slot).

        Args:
            expression: Five cron fields or a nickname (``@hourly``, ``@daily``,
                ``@reboot``...).
            worker: A worker of this app.
            **options: ``args``, ``timezone`` (IANA name, default UTC), ``queue``,
                ``priority``, ``tags``, ``meta``, ``max_attempts``, ``name`` (see
                :class:`~underway.jobs.Cron`).

        Raises:
            ConfigError: The expression, timezone, args or options are invalid, an option
                is unknown (named in the message), or the worker belongs to another app.
                Takes effect when the node next starts.
        """
        if not isinstance(worker, Worker) or self.workers.get(worker.name) is not worker:
            raise ConfigError(f"cron needs a worker registered on this app, got {worker!r}")
        check_options(options)
        entry = Cron(expression, worker, **options)
        if any(e.key == entry.key for e in self.crontab):
            raise ConfigError(f"cron entry {entry.key!r} is already scheduled")
        self.crontab.append(entry)
        return entry

    # -- enqueue ----------------------------------------------------------------------------

    async def enqueue_many(self, jobs: Iterable[JobSpec], *, conn: Any = None) -> list[Job[Any]]:
        """Insert many jobs in one statement; returns them in the same order.

        Build each job with ``worker.new(args, **options)``. Unique duplicates come back as
        the existing job with ``conflict=True``. With ``conn`` (the application's own
        connection) the jobs join its current transaction.
        """
        specs = _specs(jobs)
        if not hooks.enqueue_hooks:
            return await self._insert(specs, conn)
        with hooks.enqueueing(hooks.Enqueueing(specs)) as insert:
            inserted = insert.jobs = await self._insert(insert.specs, conn)
        return inserted

    def enqueue_many_sync(self, jobs: Iterable[JobSpec], *, conn: Any = None) -> list[Job[Any]]:
        """:meth:`enqueue_many` for synchronous code (Flask, Django, scripts, threads)."""
        specs = _specs(jobs)
        if not hooks.enqueue_hooks:
            return self._insert_sync(specs, conn)
        with hooks.enqueueing(hooks.Enqueueing(specs)) as insert:
            inserted = insert.jobs = self._insert_sync(insert.specs, conn)
        return inserted

    async def _insert(self, specs: list[JobSpec], conn: Any) -> list[Job[Any]]:
        with telemetry.span("insert", {}) as extra:
            extra["count"] = len(specs)
            inserted = await self._inserts().insert(specs, conn=conn)
        if conn is None:
            self._wake(inserted)
        return inserted

    def _insert_sync(self, specs: list[JobSpec], conn: Any) -> list[Job[Any]]:
        with telemetry.span("insert", {}) as extra:
            extra["count"] = len(specs)
            inserted = self._inserts().insert_sync(specs, conn=conn)
        if conn is None:
            self._wake(inserted)
        return inserted

    def _inserts(self) -> Inserts:
        """Where jobs are enqueued: the inline engine in ``inline`` mode, else the database."""
        return self._inline or self.engine

    def _wake(self, inserted: list[Job[Any]]) -> None:
        self._wake_queues(
            {j.queue for j in inserted if j.state is JobState.AVAILABLE and not j.conflict}
        )

    def _wake_queues(self, queues: Iterable[str]) -> None:
        """Tell this process's node (if it runs one) that ``queues`` have jobs available."""
        node, loop = self._node, self._loop
        if node is None or loop is None:
            return
        for queue in queues:
            if _on_loop(loop):
                node.wake(queue)
            else:
                loop.call_soon_threadsafe(node.wake, queue)

    def _interrupt_here(self, job_ids: Collection[int]) -> None:
        """Interrupt jobs at once if they run on this process's node (other nodes act on
        the cancel signals published for them)."""
        node, loop = self._node, self._loop
        if not job_ids or node is None or loop is None or not loop.is_running():
            return
        for job_id in job_ids:
            loop.call_soon_threadsafe(node.interrupt, job_id)  # the node's tasks are its loop's

    # -- running a node ---------------------------------------------------------------------

    async def start(self) -> None:
        """Open the database and, unless testing, start this node's queues."""
        if self._node is not None:
            return
        previous = self._stop_finished
        if previous is not None and not previous.done():
            # A stop its caller gave up on (a supervisor's bound) is still handing back and
            # closing the database: a new node waits for it, or it would close under it.
            await asyncio.shield(previous)
        self._hurry = False  # a stop_now() while no node ran does not hurry this one
        await self.engine.open()
        if self._testing is not None:
            return
        self._loop = asyncio.get_running_loop()
        node = Node(self.engine, self.workers, self.config, self.crontab)
        self._node = node
        try:
            await node.start()
        except BaseException:
            self._node = None
            raise

    async def stop(self, *, grace: float | None = None, wait_for_threads: bool = True) -> None:
        """Stop the node gracefully and close the database.

        Running jobs get ``grace`` seconds (default ``shutdown_grace``); coroutines still
        running then are cancelled and handed back to their queue. A sync job's thread
        cannot be interrupted: by default the stop waits for it (the node keeps
        heartbeating meanwhile). With ``wait_for_threads=False`` such jobs are left
        ``executing`` for other nodes to rescue once this node's heartbeat expires, and
        :attr:`left_running` counts them: the process must exit before that (``run`` does).

        Cancelled while it runs, the stop is hurried (as by :meth:`stop_now`) and still
        finishes (acks written, unfinished jobs handed back, heartbeat removed, database
        closed) before the cancellation propagates.
        """
        node, self._node = self._node, None
        finished = self._stop_finished = asyncio.get_running_loop().create_future()
        self._stopping = node
        if node is not None and self._hurry:
            node.hurry()
        try:
            await finish_despite_cancel(self._stop(node, grace, wait_for_threads), self.stop_now)
        finally:
            self._stopping, self._hurry = None, False
            finished.set_result(None)

    async def _stop(self, node: Node | None, grace: float | None, wait_for_threads: bool) -> None:
        try:
            if node is not None:
                self.left_running = await node.stop(grace, wait_for_threads=wait_for_threads)
        finally:
            await self.engine.close()

    def stop_now(self) -> None:
        """Cut the grace period of a stop in progress short.

        Coroutines still running are cancelled at once and their jobs handed back to their
        queues, as when the grace period runs out. A second SIGTERM or SIGINT does this in
        :meth:`serve`, :meth:`run` and ``underway start``. Sync jobs in threads cannot be
        interrupted (see :meth:`stop`). Called while the node runs, it makes the next stop
        skip its grace period.
        """
        self._hurry = True
        node = self._stopping
        if node is not None:
            node.hurry()

    def child_spec(
        self,
        *,
        id: str = "jobs",
        restart: Restart = "permanent",
        shutdown: float | None = None,
        wait_for_threads: bool = True,
    ) -> ChildSpec:
        """A spec to run this app's node under a :class:`~underway.tasks.Supervisor`.

        The child starts the node and is ready once it runs. Asked to stop, it stops the
        node gracefully (:meth:`stop`: running jobs get ``shutdown_grace``, every ack is
        written, unfinished jobs go back to their queues); told to hurry (a second
        SIGTERM/SIGINT under :func:`underway.tasks.run`), it cuts the grace short
        (:meth:`stop_now`). Cancelled without being asked, it stops without a grace;
        cancelled while it stops (its ``shutdown`` seconds, or the root's
        ``shutdown_timeout``, ran out), it hurries the stop and still finishes it (acks,
        hand-back, heartbeat, database) before it ends. A supervisor waits for that only
        its ``cancel_timeout`` (1 s by default) before it gives up on the child, and
        :func:`underway.tasks.run` then exits; what the stop had not done by then is left
        to the other nodes (jobs still ``executing`` are rescued once this node's
        heartbeat expires). So give the root a ``shutdown_timeout`` above the sum of its
        children's own bounds, or ``None``. A new start of the same app waits for a stop
        still finishing.

        ``shutdown`` defaults to ``None`` (the supervisor waits for the stop): the node
        bounds its own stop (the grace, then cancellation, acks written within about 13 s).
        The one part no bound can shorten is a sync job's thread, waited for with
        ``wait_for_threads`` (see :meth:`stop`).

        With ``wait_for_threads=False`` a sync job still running in a thread after the
        grace is left ``executing`` and the node's heartbeat row is kept; other nodes
        rescue the job once that heartbeat expires (``rescue_after``). The thread goes on
        running, and the interpreter waits for it at exit, so the job could then run twice.
        The caller must therefore end the process at once, without waiting for threads,
        when :func:`underway.tasks.run` returns with :attr:`left_running` not zero: flush
        its logs and call ``os._exit``, as :meth:`run` and ``underway start`` do. The
        default, ``True``, waits for the threads instead and needs nothing of the caller.
        """
        return ChildSpec(
            id,
            functools.partial(self._run_child, wait_for_threads),
            ready=True,
            restart=restart,
            shutdown=shutdown,
        )

    async def _run_child(self, wait_for_threads: bool, *, ready: Ready) -> None:
        self._stop_failure = None
        asked = asyncio.Event()
        ready.on_shutdown(asked.set)
        ready.on_hurry(self.stop_now)
        try:
            await self.start()
            _log.info("node %s running queues %s", self.config.name, self.config.queues)
            ready()
            await asked.wait()
            _log.info("node %s stopping", self.config.name)
        except asyncio.CancelledError:
            self.stop_now()  # cancelled rather than asked: no grace
            raise
        finally:
            try:
                await self.stop(wait_for_threads=wait_for_threads)
            except Exception as exc:
                self._stop_failure = exc  # for serve() and underway start to raise
                raise
            except asyncio.CancelledError as exc:
                if isinstance(exc.__cause__, Exception):  # the stop failed after a cancel
                    self._stop_failure = exc.__cause__
                raise

    def _raise_stop_failure(self) -> None:
        """Raise what made the last stop of :meth:`child_spec`'s child fail, if anything."""
        failure, self._stop_failure = self._stop_failure, None
        if failure is not None:
            raise failure

    async def serve(
        self, *, stop: asyncio.Event | None = None, wait_for_threads: bool = True
    ) -> None:
        """Run a node until ``stop`` is set or SIGTERM/SIGINT arrives, then stop gracefully.

        The node runs as the one child of :func:`underway.tasks.serve` (see
        :meth:`child_spec`), so a second SIGTERM/SIGINT during the stop cuts its grace
        period short (:meth:`stop_now`). ``wait_for_threads`` is passed to :meth:`stop`.

        Raises:
            UnderwayError: The node could not start, or its stop failed (its own error,
                such as ``DatabaseError``).
        """
        spec = self.child_spec(wait_for_threads=wait_for_threads)
        try:
            await tasks.serve([spec], stop=stop, shutdown_timeout=None)
        except ChildStartError as exc:
            cause = exc.__cause__
            if isinstance(cause, Exception):
                raise cause from None
            raise
        self._raise_stop_failure()

    def run(self) -> None:
        """Run a node in the foreground until SIGTERM or SIGINT (what ``underway start`` does).

        If sync jobs are still running in threads when the grace period ends, the process
        exits at once (threads cannot be stopped otherwise); those jobs stay ``executing``
        and other nodes rescue them once this node's heartbeat expires. If the stop also
        failed, its error is logged and the exit status is 1.

        Raises:
            UnderwayError: The node could not start, or its stop failed.
        """
        try:
            asyncio.run(self.serve(wait_for_threads=False))
        except Exception as exc:
            exit_if_left_running(self, error=exc)
            raise
        exit_if_left_running(self)

    # -- queues -----------------------------------------------------------------------------

    async def pause_queue(self, queue: str, *, local_only: bool = False) -> None:
        """Stop claiming jobs from ``queue`` on every node (or only this one); running
        jobs finish."""
        await self._control({"action": "pause", "queue": queue}, local_only)

    async def resume_queue(self, queue: str, *, local_only: bool = False) -> None:
        """Claim jobs from ``queue`` again on every node (or only this one)."""
        await self._control({"action": "resume", "queue": queue}, local_only)

    async def scale_queue(self, queue: str, limit: int, *, local_only: bool = False) -> None:
        """Change ``queue``'s concurrency limit on every node (or only this one)."""
        check_queues({queue: limit})
        await self._control({"action": "scale", "queue": queue, "limit": limit}, local_only)

    def pause_queue_sync(self, queue: str, *, local_only: bool = False) -> None:
        """:meth:`pause_queue` for synchronous code (not on a running event loop).

        In a process that runs a node, the change is made on the node's event loop;
        otherwise it is published through this app's engine (its synchronous path).

        Raises:
            ConfigError: ``local_only`` and no node runs here (or its event loop has
                stopped), or the queue does not run on this node.
            TimeoutError: The node's event loop did not run the change within 30 s (it
                is blocked); the change is cancelled.
            RuntimeError: Called on a running event loop.
        """
        self._control_sync({"action": "pause", "queue": queue}, local_only)

    def resume_queue_sync(self, queue: str, *, local_only: bool = False) -> None:
        """:meth:`resume_queue` for synchronous code (raises as :meth:`pause_queue_sync`)."""
        self._control_sync({"action": "resume", "queue": queue}, local_only)

    def scale_queue_sync(self, queue: str, limit: int, *, local_only: bool = False) -> None:
        """:meth:`scale_queue` for synchronous code (raises as :meth:`pause_queue_sync`)."""
        check_queues({queue: limit})
        self._control_sync({"action": "scale", "queue": queue, "limit": limit}, local_only)

    def _control_sync(self, signal: dict[str, Any], local_only: bool) -> None:
        """:meth:`_control` from a thread: on the node's loop when this process runs a node,
        else published through the engine's synchronous path (its async resources belong
        to the node's loop)."""
        action = f"{signal['action']}_queue"
        if _in_event_loop():
            raise RuntimeError(
                f"{action}_sync() cannot block a running event loop; use await jobs.{action}()"
            )
        node, loop = self._node, self._loop
        if node is not None and loop is not None and loop.is_running():
            future = asyncio.run_coroutine_threadsafe(self._control(signal, local_only), loop)
            try:
                future.result(timeout=_CONTROL_TIMEOUT)
            except TimeoutError:
                future.cancel()
                raise TimeoutError(
                    f"{action}_sync(): the node's event loop did not run it within "
                    f"{_CONTROL_TIMEOUT:g}s (is the loop blocked?); it was cancelled, and may "
                    "have taken effect on this node only"
                ) from None
            return
        validate_queue_name(signal["queue"])
        if local_only:
            if node is not None:
                raise ConfigError("the node of this process is not running (its event loop ended)")
            self._producer(signal["queue"])  # raises: no node runs in this process
        self.engine.publish_sync(signal)

    async def _control(self, signal: dict[str, Any], local_only: bool) -> None:
        validate_queue_name(signal["queue"])
        if local_only:
            self._producer(signal["queue"])  # raises unless the queue runs here
        if self._node is not None:
            self._node.apply(signal)  # at once here; other nodes get it within moments
        if not local_only:
            await self.engine.publish(signal)

    def _producer(self, queue: str) -> Any:
        if self._node is None:
            raise ConfigError("no node is running in this process")
        try:
            return self._node.producers[queue]
        except KeyError:
            raise ConfigError(f"queue {queue!r} does not run on this node") from None

    # -- inspecting and changing jobs ---------------------------------------------------------

    def get_job_sync(self, job_id: int) -> Job[Any] | None:
        """One job by id, or ``None``."""
        return self.engine.get_job(job_id)

    async def get_job(self, job_id: int) -> Job[Any] | None:
        """One job by id, or ``None``."""
        return await asyncio.to_thread(self.engine.get_job, job_id)

    def list_jobs_sync(
        self,
        *,
        limit: int = 100,
        offset: int = 0,
        before_id: int | None = None,
        **filters: Unpack[JobFilters],
    ) -> list[Job[Any]]:
        """Jobs matching every filter given, newest first.

        Filters (any of them; see :class:`~underway.jobs._bulk.JobFilters`): ``state``,
        ``queue``, ``worker``, ``id`` (one or a list each), ``tags`` (all present),
        ``node``, ``inserted_after``/``inserted_before``, ``finished_after``/
        ``finished_before`` (aware datetimes or epoch seconds), ``args``/``meta`` (a dict
        contained in the job's). Without filters, the newest jobs.

        Page through a long history with ``before_id``: the next page is
        ``before_id=<the last id of this one>``; no job is skipped or repeated while new
        ones are inserted, and a page deep in the history costs what the first one does
        (``offset`` reads every job it skips).

        Raises:
            ConfigError: A filter is unknown, of the wrong type or empty, or ``limit``,
                ``offset`` or ``before_id`` is out of range (named).
        """
        where = job_filter(filters, limit=limit, offset=offset, before_id=before_id)
        return self.engine.list_jobs(where)

    async def list_jobs(
        self,
        *,
        limit: int = 100,
        offset: int = 0,
        before_id: int | None = None,
        **filters: Unpack[JobFilters],
    ) -> list[Job[Any]]:
        """Async :meth:`list_jobs_sync`."""
        where = job_filter(filters, limit=limit, offset=offset, before_id=before_id)
        return await asyncio.to_thread(self.engine.list_jobs, where)

    def retry_job_sync(self, job_id: int) -> Job[Any] | None:
        """Make a finished or waiting job available now (not one that is executing)."""
        job = self.engine.retry_job(job_id, time.time())
        if job is not None and job.state is JobState.AVAILABLE:
            self._wake([job])
        return job

    async def retry_job(self, job_id: int) -> Job[Any] | None:
        """Async :meth:`retry_job_sync`."""
        return await asyncio.to_thread(self.retry_job_sync, job_id)

    def cancel_job_sync(self, job_id: int) -> Job[Any] | None:
        """Cancel a job that has not finished, and interrupt it on whichever node runs it.

        A coroutine job is interrupted (at once on this process's node, through a control
        signal on any other); a sync job's thread cannot be, so it runs to its end and its
        outcome is ignored.
        """
        job = self.engine.cancel_job(job_id, time.time())
        if job is None or job.state is not JobState.CANCELLED:
            return job
        self._interrupt_here([job.id])
        self.engine.publish_sync({"action": "cancel", "job_id": job_id})
        return job

    async def cancel_job(self, job_id: int) -> Job[Any] | None:
        """Cancel a job that has not finished, and interrupt it on whichever node runs it
        (a coroutine job; a sync job's thread runs to its end and its outcome is ignored).
        """
        return await asyncio.to_thread(self.cancel_job_sync, job_id)

    # -- bulk actions: every job matching the filters, in one statement ----------------------

    def retry_all_jobs_sync(self, *, all: bool = False, **filters: Unpack[JobFilters]) -> int:
        """Make every matching job that is scheduled, retryable, completed, discarded or
        cancelled available now, with at least one attempt left; return how many.

        Executing jobs are left to their run and available ones keep their place. The
        queues of the retried jobs are woken on every node.

        Args:
            all: Retry every job that can be: required when no filter is given, refused
                with one (so an empty filter never acts by accident).
            **filters: As :meth:`list_jobs_sync`; ``state`` only among the states above.

        Raises:
            ConfigError: A filter is unknown, of the wrong type, empty, or names a state
                this action never touches; or the ``all`` rule above is broken. Nothing is
                changed then.
        """
        return self._bulk("retry", bulk_filter("retry", filters, everything=all))

    async def retry_all_jobs(self, *, all: bool = False, **filters: Unpack[JobFilters]) -> int:
        """Async :meth:`retry_all_jobs_sync`."""
        where = bulk_filter("retry", filters, everything=all)
        return await asyncio.to_thread(self._bulk, "retry", where)

    def cancel_all_jobs_sync(self, *, all: bool = False, **filters: Unpack[JobFilters]) -> int:
        """Cancel every matching job that has not finished; return how many.

        A cancelled job that was executing is interrupted on whichever node runs it (at
        once on this process's node, through a control signal on any other, written in the
        same transaction); a sync job's thread cannot be, so it runs to its end and its
        outcome is ignored, as with :meth:`cancel_job_sync`.

        Args:
            all: Cancel every unfinished job: required when no filter is given, refused
                with one.
            **filters: As :meth:`list_jobs_sync`; ``state`` only among scheduled,
                available, executing and retryable.

        Raises:
            ConfigError: As :meth:`retry_all_jobs_sync`.
        """
        return self._bulk("cancel", bulk_filter("cancel", filters, everything=all))

    async def cancel_all_jobs(self, *, all: bool = False, **filters: Unpack[JobFilters]) -> int:
        """Async :meth:`cancel_all_jobs_sync`."""
        where = bulk_filter("cancel", filters, everything=all)
        return await asyncio.to_thread(self._bulk, "cancel", where)

    def delete_all_jobs_sync(self, *, all: bool = False, **filters: Unpack[JobFilters]) -> int:
        """Delete every matching finished job (completed, discarded or cancelled); return
        how many.

        Waiting and executing jobs are never deleted: a waiting job would vanish without a
        trace (cancel it instead, and it stays in the history until pruned), and an
        executing one would be deleted under its run, whose outcome would then be lost.
        This is the pruner's work done now, for the jobs one chooses.

        Args:
            all: Delete every finished job: required when no filter is given, refused with
                one.
            **filters: As :meth:`list_jobs_sync`; ``state`` only among the finished states.

        Raises:
            ConfigError: As :meth:`retry_all_jobs_sync`.
        """
        return self._bulk("delete", bulk_filter("delete", filters, everything=all))

    async def delete_all_jobs(self, *, all: bool = False, **filters: Unpack[JobFilters]) -> int:
        """Async :meth:`delete_all_jobs_sync`."""
        where = bulk_filter("delete", filters, everything=all)
        return await asyncio.to_thread(self._bulk, "delete", where)

    def _bulk(self, action: str, where: JobFilter) -> int:
        """Run a bulk action; wake the retried jobs' queues and interrupt the cancelled
        jobs that run here (other nodes act on the notifications and signals)."""
        result = bulk(self.engine, action, where)
        self._wake_queues(result.queues)
        self._interrupt_here(result.executing)
        return result.count

    def counts_sync(self) -> dict[tuple[str, JobState], int]:
        """Number of jobs by (queue, state)."""
        return self.engine.counts()

    def job_counters_sync(
        self,
        *,
        since: datetime | float,
        until: datetime | float | None = None,
        queue: str | Iterable[str] | None = None,
        worker: Worker | str | Iterable[Worker | str] | None = None,
        bucket: int = 60,
        by: str | Iterable[str] = ("queue", "worker"),
    ) -> list[MinuteCount]:
        """Finished attempts per minute, queue and worker: completed, failed (to be
        retried), discarded, cancelled and snoozed, ordered by minute, queue and worker.

        The counts are kept by the acks as they are written (and by cancellations), so a
        chart over any range reads those rows only, never the jobs; they are kept for
        ``Pruning.counters`` seconds. A minute, queue and worker with nothing finished has
        no row. With ``bucket`` or ``by`` the database adds the rows up, so a chart reads
        one row per bucket (and queue) however many minutes and workers it covers.

        Args:
            since: The first minute (an aware datetime or epoch seconds; the minute it
                falls in is included).
            until: The end (excluded): minutes starting before it. Default: now.
            queue: Only these queues (one or a list).
            worker: Only these workers (one, or a list; workers or their full names).
            bucket: Sum the minutes per bucket of this many seconds (a multiple of 60),
                counted from the start of ``since``'s minute; each row's ``minute`` is its
                bucket's start. Default: each minute.
            by: Group by these of ``"queue"`` and ``"worker"`` only (one, a list, or an
                empty list for the total); a dimension not grouped by is ``None`` in the
                rows. Default: both.

        Raises:
            ConfigError: An argument is missing, of the wrong type or empty (named), or
                ``since`` is not before ``until``, ``bucket`` is not a multiple of 60
                seconds, ``by`` names anything else or twice; or the engine keeps no
                counters.
        """
        query = counter_query(
            since=since, until=until, queue=queue, worker=worker, bucket=bucket, by=by
        )
        return read_counters(self.engine, query)

    async def job_counters(
        self,
        *,
        since: datetime | float,
        until: datetime | float | None = None,
        queue: str | Iterable[str] | None = None,
        worker: Worker | str | Iterable[Worker | str] | None = None,
        bucket: int = 60,
        by: str | Iterable[str] = ("queue", "worker"),
    ) -> list[MinuteCount]:
        """Async :meth:`job_counters_sync`."""
        query = counter_query(
            since=since, until=until, queue=queue, worker=worker, bucket=bucket, by=by
        )
        return await asyncio.to_thread(read_counters, self.engine, query)

    # -- overview: queues, nodes and cron entries, from indexes and small tables -------------

    def queues_sync(self) -> list[QueueInfo]:
        """Every queue, by name: its waiting and running jobs by state, and the live nodes
        that run it (each one's limit, running jobs and whether it is paused, as of its
        last heartbeat).

        The queues listed are this app's, those with waiting or running jobs, and those a
        live node runs. Finished jobs are not counted (that would read the whole history);
        only indexes and the nodes' heartbeats are read.
        """
        known = {*self.config.queues, *(w.queue for w in self.workers.values())}
        now, after = time.time(), self.config.rescue_after
        return queue_infos(self.engine, known=known, rescue_after=after, now=now)

    async def queues(self) -> list[QueueInfo]:
        """Async :meth:`queues_sync`."""
        return await asyncio.to_thread(self.queues_sync)

    def nodes_sync(self) -> list[NodeInfo]:
        """Every node with a heartbeat row, by name: when it started, how old its last
        heartbeat is, whether it is alive (heartbeated within ``rescue_after``) and the
        leader, its queues (limit, running, paused), workers, version, host and pid."""
        return node_infos(self.engine, rescue_after=self.config.rescue_after, now=time.time())

    async def nodes(self) -> list[NodeInfo]:
        """Async :meth:`nodes_sync`."""
        return await asyncio.to_thread(self.nodes_sync)

    def cron_entries_sync(self) -> list[CronInfo]:
        """This app's cron entries, in the order they were added: expression, worker,
        queue, the last slot a job was inserted for (by any node) and the next one."""
        return cron_infos(self.engine, self.crontab, now=time.time())

    async def cron_entries(self) -> list[CronInfo]:
        """Async :meth:`cron_entries_sync`."""
        return await asyncio.to_thread(self.cron_entries_sync)

    def migrate_sync(self) -> list[str]:
        """Apply pending schema migrations; returns their names."""
        return self.engine.migrate()

    async def health(self, *, node: str | None = None, timeout: float = 5.0) -> Health:
        """Check the database and, with ``node``, that node's heartbeat; report, never raise.

        The database is read on a short connection of the check's own, within ``timeout``
        seconds: nothing is migrated or created. The report says whether the database
        answered (and why not), whether its migrations are this version's (pending ones
        and those of a newer version listed), and whether ``node`` heartbeated within
        ``rescue_after``, the window after which its jobs are rescued. ``Health.ok`` is
        whether every check passed.

        Raises:
            ConfigError: ``node`` is not a name, or ``timeout`` is not seconds > 0.
        """
        window = self.config.rescue_after
        return await check_health(self.engine, node=node, window=window, timeout=timeout)

    def health_sync(self, *, node: str | None = None, timeout: float = 5.0) -> Health:
        """:meth:`health` for synchronous code (not on a running event loop).

        Raises:
            ConfigError: As :meth:`health`.
            RuntimeError: Called on a running event loop.
        """
        check_args(node, timeout)
        if _in_event_loop():
            raise RuntimeError(
                "health_sync() cannot block a running event loop; use await jobs.health()"
            )
        return asyncio.run(self.health(node=node, timeout=timeout))


def exit_if_left_running(jobs: Jobs, *, error: BaseException | None = None) -> None:
    """End the process at once if the last stop left sync jobs running in threads.

    Python cannot stop a thread, and the interpreter would wait for it at exit while the
    job may already be rescued elsewhere: leaving now is what keeps a job from running
    twice at the same time. With ``error`` (what made the run fail) it is logged and the
    process exits with status 1, else 0.
    """
    if not jobs.left_running:
        return
    if error is not None:
        _log.error("node %s failed: %s", jobs.config.name, error, exc_info=error)
    _log.warning(
        "exiting with %d sync job(s) still running in threads; they stay executing and are "
        "rescued once this node's heartbeat expires",
        jobs.left_running,
    )
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0 if error is None else 1)


def _specs(jobs: Iterable[JobSpec]) -> list[JobSpec]:
    specs = list(jobs)
    for spec in specs:
        if not isinstance(spec, JobSpec):
            raise EnqueueError(
                f"enqueue_many takes jobs built with worker.new(...), got {type(spec).__name__}"
            )
    return specs


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
