"""The ``underway`` command: run a node, migrate, inspect jobs, and a guided demo.

    underway start myapp.tasks:jobs --queue default=10 --queue mail=20
    underway start myapp.tasks:jobs --processes 4 --metrics-port 9464
    underway migrate --database sqlite:///app.db
    underway health --app myapp.tasks:jobs --node web-1
    underway jobs list --state retryable --database sqlite:///app.db
    UNDERWAY_DASHBOARD_TOKEN=... underway dashboard --app myapp.tasks:jobs --port 8200
    underway demo

Exit codes: 0 success, 1 the command failed (a database error, a missing job), 2 bad
usage (an unknown option, an app that cannot be loaded). ``start --processes N`` exits
with the status of a child that could not start (128 + N when signal N killed it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from underway import __version__
from underway import _telemetry as telemetry
from underway.cli._dashboard import dashboard_command
from underway.cli._health import health_command
from underway.cli._jobs import (
    AppError,
    FailError,
    jobs_group,
    load_app,
    open_jobs,
    target_options,
    use_database,
)
from underway.cli._node import StopFailed, run_node
from underway.cli._processes import (
    child_argv,
    metrics_directory,
    run_processes,
    take_parent_fd,
    take_ready_fd,
)
from underway.errors import ConfigError, UnderwayError
from underway.jobs.app import Jobs, exit_if_left_running
from underway.jobs.config import check_queues

if TYPE_CHECKING:
    from underway.prometheus import MetricsServer

__all__ = ["main"]

_log = logging.getLogger("underway.cli")
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_LOG_LEVELS = ("debug", "info", "warning", "error")
_NO_PROMETHEUS = "--metrics-port needs prometheus-client: pip install 'underway[prometheus]'"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="underway")
def main() -> None:
    """Background work for Python: run and inspect durable job queues."""


main.add_command(jobs_group)
main.add_command(dashboard_command)
main.add_command(health_command)


# -- start ------------------------------------------------------------------------------------


def _parse_queues(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, int]:
    """``--queue NAME=LIMIT`` options as a mapping of queue to limit."""
    queues: dict[str, int] = {}
    for value in values:
        name, sep, limit = value.partition("=")
        if not sep:
            raise click.BadParameter(f"{value!r} is not NAME=LIMIT (for example mail=10)")
        try:
            number = int(limit)
        except ValueError:
            raise click.BadParameter(
                f"limit of queue {name!r} must be a whole number, got {limit!r}"
            ) from None
        if name in queues:
            raise click.BadParameter(f"queue {name!r} is given twice")
        try:
            check_queues({name: number})
        except ConfigError as exc:
            raise click.BadParameter(str(exc)) from None
        queues[name] = number
    return queues


def _configure(
    jobs: Jobs,
    *,
    queues: dict[str, int],
    database: str | None,
    node_name: str | None,
    shutdown_grace: float | None,
) -> None:
    """Apply the command line's overrides to the app's settings."""
    if jobs.testing is not None:
        raise AppError(f"the app is in testing mode {jobs.testing!r}; a node needs testing=None")
    changes: dict[str, object] = {}
    if queues:
        changes["queues"] = queues
    if node_name:
        changes["name"] = node_name
    if shutdown_grace is not None:
        changes["shutdown_grace"] = shutdown_grace
    try:
        jobs.config = dataclasses.replace(jobs.config, **changes)  # type: ignore[arg-type]
    except ConfigError as exc:
        raise AppError(str(exc)) from None
    if database:
        use_database(jobs, database)


@main.command()
@click.argument("app", metavar="MODULE:ATTR")
@click.option(
    "--queue",
    "queues",
    multiple=True,
    metavar="NAME=LIMIT",
    callback=_parse_queues,
    help="Run this queue with this limit (repeatable; replaces the app's queues).",
)
@click.option("--database", metavar="URL", help="Database URL (overrides the app's).")
@click.option("--node-name", help="This node's name (default: host, pid and a random suffix).")
@click.option(
    "--shutdown-grace",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Seconds running jobs get to finish after SIGTERM/SIGINT.",
)
@click.option(
    "--stats-interval",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    metavar="SECONDS",
    help=(
        "Log job counts per queue and state this often (0: never). Each line counts every "
        "job in the database, history included: keep it off on a large history."
    ),
)
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help=(
        "Run this many node processes (to use more than one core); a child that dies "
        "after it started is started again under a fresh node name, with backoff."
    ),
)
@click.option("--log-jobs", is_flag=True, help="Log every job's start, end and failure.")
@click.option(
    "--log-level",
    type=click.Choice(_LOG_LEVELS),
    default="info",
    show_default=True,
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    metavar="PORT",
    help=(
        "Serve Prometheus metrics at http://ADDR:PORT/metrics (needs underway[prometheus]); "
        "with --processes, of every process. 0 picks a free port (logged)."
    ),
)
@click.option(
    "--metrics-addr",
    default="0.0.0.0",  # noqa: S104 - Prometheus scrapes from another host
    show_default=True,
    metavar="ADDR",
    help="The address --metrics-port listens on.",
)
@click.option(
    "--metrics-interval",
    type=click.FloatRange(min=0),
    default=15.0,
    show_default=True,
    metavar="SECONDS",
    help=(
        "How often the leader counts the jobs by queue and state for the "
        "underway_queue_jobs gauge (one query over every job, history included; 0: never)."
    ),
)
@click.option(
    "--metrics-multiprocess",
    is_flag=True,
    hidden=True,  # a child of --processes: record metrics for the parent to serve
)
def start(
    app: str,
    queues: dict[str, int],
    database: str | None,
    node_name: str | None,
    shutdown_grace: float | None,
    stats_interval: float,
    processes: int,
    log_jobs: bool,
    log_level: str,
    metrics_port: int | None,
    metrics_addr: str,
    metrics_interval: float,
    metrics_multiprocess: bool,
) -> None:
    """Run a node for the Jobs app MODULE:ATTR until SIGTERM or SIGINT.

    ATTR defaults to `jobs`. The current directory is importable, so
    `underway start tasks:jobs` finds tasks.py beside you.
    """
    ready_fd = take_ready_fd()  # before the app's import can start processes of its own
    parent_fd = take_parent_fd()
    logging.basicConfig(level=log_level.upper(), format=_LOG_FORMAT, stream=sys.stderr)
    jobs = load_app(app)
    _configure(
        jobs, queues=queues, database=database, node_name=node_name, shutdown_grace=shutdown_grace
    )
    if not jobs.workers:
        _log.warning(
            "%s registers no workers, so this node runs no jobs; jobs in its queues stay "
            "available for nodes that have their workers",
            app,
        )
    if processes > 1:

        def one_node(name: str) -> list[str]:
            args = ["start", app, "--stats-interval", str(stats_interval), "--log-level", log_level]
            for queue, limit in queues.items():
                args += ["--queue", f"{queue}={limit}"]
            if database:
                args += ["--database", database]
            # Every process needs its own name (heartbeats, rescue and the reconciler
            # tell nodes apart by it), even when the app sets one; a restarted child
            # gets a fresh one, so its predecessor's jobs are rescued as a dead node's.
            args += ["--node-name", name]
            if shutdown_grace is not None:
                args += ["--shutdown-grace", str(shutdown_grace)]
            if log_jobs:
                args.append("--log-jobs")
            if metrics_port is not None:
                args += ["--metrics-multiprocess", "--metrics-interval", str(metrics_interval)]
            return child_argv(args)

        base = node_name or jobs.config.name
        if metrics_port is None:
            sys.exit(run_processes(processes, base, one_node))
        sys.exit(_serve_processes(processes, base, one_node, metrics_port, metrics_addr))
    if log_jobs:
        telemetry.attach_logging(logging.getLogger("underway.jobs"), prefix="job.")
    with _metrics(jobs, metrics_port, metrics_addr, metrics_interval, metrics_multiprocess):
        try:
            asyncio.run(run_node(jobs, stats_interval, ready_fd, parent_fd))
        except StopFailed as exc:
            exit_if_left_running(jobs, error=exc.__cause__)
            raise FailError(
                f"node {jobs.config.name} failed while stopping: {exc.__cause__}"
            ) from None
        except UnderwayError as exc:
            exit_if_left_running(jobs, error=exc)
            raise FailError(f"node {jobs.config.name} cannot run: {exc}") from None
        exit_if_left_running(jobs)


@contextmanager
def _metrics(
    jobs: Jobs, port: int | None, addr: str, interval: float, multiprocess: bool
) -> Iterator[None]:
    """Record the node's metrics while the block runs, served on ``port`` if given.

    A child of ``--processes`` (``multiprocess``) records them in the parent's directory
    and serves nothing.
    """
    if port is None and not multiprocess:
        yield
        return
    _require_prometheus()
    from underway import prometheus

    if interval > 0:
        metrics = prometheus.instrument(jobs, interval=interval)
    else:  # no job counts: a large history makes each one costly
        metrics = prometheus.instrument()
    server = None
    try:
        if port is not None:
            server = _serve(port, addr, "this node")
        yield
    finally:
        if server is not None:
            server.close()
        metrics.detach()


def _serve_processes(
    count: int, base: str, argv: Callable[[str], Sequence[str]], port: int, addr: str
) -> int:
    """``run_processes`` with the children's metrics merged and served on ``port``."""
    with metrics_directory() as path:  # set before prometheus_client is imported here
        _require_prometheus()
        from underway import prometheus

        server = _serve(port, addr, f"{count} node processes (files in {path})")
        try:
            return run_processes(count, base, argv, on_exit=prometheus.forget_process)
        finally:
            server.close()


def _require_prometheus() -> None:
    """Import ``underway.prometheus``, or say which extra to install."""
    try:
        import underway.prometheus  # noqa: F401 - loaded for the callers' own import
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("prometheus_client"):
            raise
        raise AppError(_NO_PROMETHEUS) from None


def _serve(port: int, addr: str, what: str) -> MetricsServer:
    from underway import prometheus

    try:
        server = prometheus.serve(port, addr=addr)
    except ConfigError as exc:
        raise FailError(str(exc)) from None
    host, bound = server.address
    _log.info("serving the metrics of %s at http://%s:%d/metrics", what, host, bound)
    return server


# -- migrate ----------------------------------------------------------------------------------


@main.command()
@target_options
def migrate(app: str | None, database: str | None) -> None:
    """Create or upgrade the jobs tables in the database."""
    with open_jobs(app, database, must_exist=False) as jobs:
        applied = jobs.migrate_sync()
    for name in applied:
        click.echo(f"applied {name}")
    if applied:
        click.echo(f"{jobs.database}: {len(applied)} migration(s) applied")
    else:
        click.echo(f"{jobs.database}: schema is current, nothing to apply")


# -- demo -------------------------------------------------------------------------------------


@main.command()
@click.option(
    "--database",
    metavar="URL",
    help="Keep the demo's jobs in this (scratch) database instead of a temporary file.",
)
@click.option("--fast", is_flag=True, help="Shorter waits: about 3 seconds instead of 8.")
@click.pass_context
def demo(ctx: click.Context, database: str | None, fast: bool) -> None:
    """Watch a short, realistic session of jobs on SQLite, then a summary."""
    from underway.cli.demo import run_demo

    try:
        code = run_demo(database=database, fast=fast, out=sys.stdout)
    except UnderwayError as exc:
        raise FailError(f"demo failed: {exc}") from None
    ctx.exit(code)
