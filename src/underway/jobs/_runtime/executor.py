"""Runs one job: finds its worker, applies the timeout, and decides the outcome."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import time
from collections.abc import Mapping
from concurrent.futures import Executor as ThreadPool
from typing import Any

import underway.jobs.backoff as backoff_policy
from underway import _telemetry as telemetry
from underway.errors import JobTimeout, UnknownWorker
from underway.jobs import _hooks as hooks
from underway.jobs._runtime.lanes import Lanes
from underway.jobs.job import Job, JobState
from underway.jobs.outcomes import Ack, Cancel, Error, Snooze, decide, storable_json
from underway.jobs.worker import Worker

__all__ = ["INTERRUPTED", "Executor"]

_log = logging.getLogger("underway.jobs")
INTERRUPTED = "underway: the job was cancelled while it ran"
"""The message a node cancels a running job's task with when the job itself was cancelled
(``Jobs.cancel_job``, a bulk cancel): its attempt ends with the outcome ``cancelled``, not
handed back as on a stop."""


class Executor:
    """Performs jobs with the registered workers. Sync workers run in ``threads``.

    A thread cannot be interrupted, so a sync job keeps its place until its thread returns:
    :attr:`in_threads` lists the jobs whose thread is still running, and a sync job's
    timeout is checked when its body returns (measured from when the thread started it).
    Threads of ``threads`` are borrowed through :class:`~underway.jobs._runtime.lanes.Lanes`:
    sync jobs started together run one after another in one thread while each is quick, and
    a job that waited there longer than a millisecond gets a thread of its own.
    """

    def __init__(self, workers: Mapping[str, Worker], node: str, threads: ThreadPool) -> None:
        self.workers = workers
        self.node = node
        self.threads = threads
        self.lanes = Lanes(threads)
        self.in_threads: set[int] = set()

    async def run(self, job: Job[Any]) -> Ack:
        """Run ``job`` and return the change to record. Never raises except on cancellation."""
        if not hooks.run_hooks:
            return await self._run(job, None)
        with hooks.running(hooks.Running(job, self.node)) as run:
            ack = run.ack = await self._run(job, run)
        return ack

    async def _run(self, job: Job[Any], run: hooks.Running | None) -> Ack:
        worker = self.workers.get(job.worker)
        if worker is None:
            return _unknown_worker(job, self.node, self.workers)
        meta = {"job": job, "queue": job.queue, "worker": job.worker, "node": self.node}
        traced = telemetry.enabled()
        start = time.perf_counter()
        if traced:
            telemetry.emit("job.start", {"system_time": time.time()}, meta)
        try:
            outcome = await self._perform(worker, job)
        except asyncio.CancelledError as exc:
            if traced and exc.args == (INTERRUPTED,):
                measures = {"duration": time.perf_counter() - start}
                telemetry.emit("job.stop", measures, {**meta, "state": JobState.CANCELLED.value})
            raise
        result = None
        plain = not isinstance(outcome, BaseException | Snooze | Cancel | Error)
        if worker.record_result and plain:
            try:
                result = storable_json(outcome)
            except (TypeError, ValueError) as exc:
                outcome = TypeError(f"result of {worker.name} is not JSON-serialisable: {exc}")
        if run is not None:
            run.outcome = outcome
        failed = isinstance(outcome, BaseException | Error)
        retry = failed and job.attempt < job.max_attempts
        ack = decide(
            job.id,
            job.attempt,
            job.max_attempts,
            outcome,
            now=time.time(),
            backoff=_backoff(worker, job) if retry else 0.0,
            result=result,
        )
        if traced:
            measures = {"duration": time.perf_counter() - start}
            info = {**meta, "state": ack.state.value}
            if failed:
                telemetry.emit("job.exception", measures, {**info, "error": outcome})
            else:
                telemetry.emit("job.stop", measures, info)
        return ack

    async def _perform(self, worker: Worker, job: Job[Any]) -> Any:
        """The worker's return value, or the exception it raised (any but cancellation)."""
        try:
            typed = worker.typed_job(job)
            if worker.is_async:
                return await _with_timeout(worker.call(typed), worker.timeout, job.id)
            result = await self._in_thread(worker, typed)
            if inspect.isawaitable(result):  # an async body behind a plain decorator
                return await _with_timeout(result, worker.timeout, job.id)
            return result
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is None or task.cancelling():  # this run was cancelled: a stop, cancel_job
                raise
            return exc  # the body's own (a task it awaited was cancelled): it fails the attempt
        except BaseException as exc:  # SystemExit or KeyboardInterrupt from a job body fail it
            return exc

    async def _in_thread(self, worker: Worker, job: Job[Any]) -> Any:
        # Cancelling the awaiting task cannot stop a running thread, so the job stays in
        # in_threads until its thread really returns (the thread itself removes it).
        self.in_threads.add(job.id)
        if hooks.run_hooks:  # what the hooks made current (a span) is current in the thread
            context = contextvars.copy_context()
            body = functools.partial(context.run, _timed_call, worker, job)
        else:
            body = functools.partial(_timed_call, worker, job)
        return await self.lanes.run(body, lambda: self.in_threads.discard(job.id))


async def _with_timeout(call: Any, timeout: float | None, job_id: int) -> Any:
    if timeout is None:
        return await call
    try:
        async with asyncio.timeout(timeout) as scope:
            return await call
    except TimeoutError:
        if scope.expired():
            return JobTimeout(f"job {job_id} ran longer than its timeout of {timeout}s")
        raise


def _timed_call(worker: Worker, job: Job[Any]) -> Any:
    """Run a sync body in its thread; past the timeout its result becomes a JobTimeout."""
    started = time.monotonic()
    result = worker.call(job)
    elapsed = time.monotonic() - started
    if worker.timeout is not None and elapsed > worker.timeout:
        return JobTimeout(
            f"job {job.id} ran {elapsed:.2f}s, longer than its timeout of {worker.timeout}s "
            "(a sync job cannot be interrupted: it is failed when its thread returns)"
        )
    return result


def _backoff(worker: Worker, job: Job[Any]) -> float:
    try:
        return worker.backoff(job)
    except Exception as exc:
        _log.error("backoff of %s failed (%r); using the default", worker.name, exc)
        return backoff_policy.exponential(job.attempt)


def _unknown_worker(job: Job[Any], node: str, workers: Mapping[str, Worker]) -> Ack:
    known = ", ".join(sorted(workers)) or "none"
    error = UnknownWorker(
        f"no worker named {job.worker!r} is registered on node {node} "
        f"(registered: {known}); the job is discarded"
    )
    return Ack(
        job.id, JobState.DISCARDED, time.time(), job.attempt, error=f"UnknownWorker: {error}"
    )
