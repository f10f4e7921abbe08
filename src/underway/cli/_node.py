"""``underway start``'s node process: the node and its reporter under one root supervisor.

The root is :func:`underway.tasks.serve`, the signal root of every underway program: the
first SIGTERM/SIGINT stops the children in reverse order (the reporter, then the node,
which gives running jobs their grace), the second hurries the stop (running coroutine
jobs are cancelled and handed back at once).
"""

from __future__ import annotations

import asyncio
import logging

from underway._aio import wait_event
from underway.cli._console import counts_line
from underway.cli._processes import report_ready, stop_when_parent_exits
from underway.errors import ChildStartError, UnderwayError
from underway.jobs.app import Jobs
from underway.tasks import ChildSpec, Ready, Supervisor, serve

__all__ = ["StopFailed", "run_node"]

_log = logging.getLogger("underway.cli")


class StopFailed(Exception):
    """The node ran, but its stop failed; ``__cause__`` is the error."""


async def run_node(
    jobs: Jobs, stats_interval: float, ready_fd: int | None, parent_fd: int | None
) -> None:
    """Run ``jobs``' node until SIGTERM/SIGINT, reporting counts every ``stats_interval`` s.

    Once the node has started, one byte goes to ``ready_fd`` (the pipe of a parent that
    runs ``--processes``), which tells that parent this child started. End of file on
    ``parent_fd`` (that parent died) stops the node as a first signal does. Sync jobs
    still in threads after the grace are left for rescue (the caller exits the process).

    Raises:
        UnderwayError: The node could not start (its own error, such as ``DatabaseError``).
        StopFailed: The node ran, but its stop failed.
    """
    reporter = _Reporter(jobs, stats_interval, ready_fd)
    root = Supervisor(
        [
            jobs.child_spec(id="node", wait_for_threads=False),
            ChildSpec("reporter", reporter.run, ready=True, restart="transient"),
        ],
        name=f"node {jobs.config.name}",
    )
    stop = asyncio.Event()
    with stop_when_parent_exits(parent_fd, stop.set):
        try:
            await serve(root, stop=stop, shutdown_timeout=None)  # the node bounds its stop
        except ChildStartError as exc:
            cause = exc.__cause__
            if isinstance(cause, UnderwayError):
                raise cause from None
            raise
    try:
        jobs._raise_stop_failure()  # the supervisor only logged it
    except Exception as exc:  # whatever failed, the caller must still exit at once
        raise StopFailed(exc) from exc
    _log.info("node %s stopped", jobs.config.name)


class _Reporter:
    """Says the node started (in the log, and once to a parent), then logs job counts."""

    def __init__(self, jobs: Jobs, stats_interval: float, ready_fd: int | None) -> None:
        self.jobs = jobs
        self.stats_interval = stats_interval
        self.ready_fd = ready_fd

    async def run(self, *, ready: Ready) -> None:
        jobs, config = self.jobs, self.jobs.config
        asked = asyncio.Event()
        ready.on_shutdown(asked.set)
        queues = ", ".join(f"{q}={n}" for q, n in config.queues.items())
        _log.info(
            "node %s started: database %s, queues %s, %d worker(s)",
            config.name,
            jobs.database,
            queues,
            len(jobs.workers),
        )
        fd, self.ready_fd = self.ready_fd, None
        report_ready(fd)
        ready()
        while not await wait_event(asked, self.stats_interval or None):
            await _log_stats(jobs)
        _log.info(
            "node %s stopping: running jobs get up to %ss", config.name, config.shutdown_grace
        )


async def _log_stats(jobs: Jobs) -> None:
    try:
        counts = await asyncio.to_thread(jobs.counts_sync)
    except UnderwayError as exc:
        _log.warning("could not read job counts: %s", exc)
        return
    _log.info("jobs by queue: %s", counts_line(counts, jobs.config.queues))
