"""Command-line plumbing for durable jobs: loading an app, and the ``underway jobs`` commands.

``underway jobs list|show|retry|cancel|delete`` inspect and change jobs in a database given
with ``--database URL`` or through an application (``--app module:attr``). ``retry`` and
``cancel`` act on one job by id, or, like ``delete``, on every job matching filters, after a
confirmation (``--yes`` skips it; no filter at all asks with a warning that names it).
Listing and the bulk actions take time ranges: ``--inserted-after``/``--inserted-before``
and ``--finished-after``/``--finished-before``, ISO 8601 dates or datetimes (local time
when no offset is given).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from underway.cli._console import STATES, table
from underway.errors import ConfigError, UnderwayError
from underway.jobs._bulk import bulk_filter, job_filter
from underway.jobs.app import Jobs
from underway.jobs.engines import open_engine
from underway.jobs.engines.base import BULK_CANCEL_STATES, BULK_DELETE_STATES, BULK_RETRY_STATES
from underway.jobs.job import FINISHED_STATES, Job, JobState

__all__ = ["AppError", "FailError", "jobs_group", "load_app", "open_jobs", "use_database"]

F = TypeVar("F", bound=Callable[..., Any])


class AppError(click.ClickException):
    """The application or an option cannot be used (exit code 2, one line)."""

    exit_code = 2


class FailError(click.ClickException):
    """The command could not do what was asked (exit code 1, one line)."""

    exit_code = 1


# -- loading an application -------------------------------------------------------------------


def load_app(spec: str) -> Jobs:
    """Import ``module:attr`` (``attr`` defaults to ``jobs``) with the current directory
    on ``sys.path`` and return the :class:`Jobs` it names.

    Raises:
        AppError: The module or attribute does not exist, importing failed, or the object
            is not a ``Jobs``.
    """
    module_name, _, attr = spec.partition(":")
    attr = attr or "jobs"
    if not module_name or not all(p.isidentifier() for p in module_name.split(".")):
        raise AppError(f"app must look like module:attribute (e.g. myapp.tasks:jobs), got {spec!r}")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    module = _import(module_name)
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(obj, Jobs):
        raise AppError(
            f"{module_name}:{attr} is a {type(obj).__name__}, not an underway.jobs.Jobs app"
        )
    return obj


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise AppError(
                f"no module named {name!r} (searched {os.getcwd()} and sys.path)"
            ) from None
        raise AppError(f"importing {name!r} failed: {exc}") from None
    except Exception as exc:
        raise AppError(
            f"importing {name!r} failed: {type(exc).__name__}: {exc} "
            f"(run python -c 'import {name}' for the traceback)"
        ) from None


def use_database(jobs: Jobs, url: str) -> None:
    """Point ``jobs`` at another database (before it starts)."""
    try:
        engine = open_engine(url)
    except ConfigError as exc:
        raise AppError(str(exc)) from None
    jobs.engine = engine
    jobs.database = url


def _require_existing(jobs: Jobs) -> None:
    path = getattr(jobs.engine, "path", None)
    if isinstance(path, str) and path != ":memory:" and not Path(path).exists():
        raise FailError(f"no database at {path} (check --database, or run underway migrate)")


@contextmanager
def open_jobs(app: str | None, database: str | None, *, must_exist: bool = True) -> Iterator[Jobs]:
    """The Jobs app for ``--app`` and/or ``--database``, closed afterwards.

    Database errors inside the block become a one-line error with exit code 1.
    """
    if app is None and database is None:
        raise AppError("give --database URL or --app module:attr")
    if app is not None:
        jobs = load_app(app)
        if database is not None:
            use_database(jobs, database)
    else:
        assert database is not None
        jobs = Jobs("sqlite:///underway.db", prune=None)
        use_database(jobs, database)
    if must_exist:
        _require_existing(jobs)
    try:
        yield jobs
    except UnderwayError as exc:
        raise FailError(str(exc)) from None
    finally:
        asyncio.run(jobs.engine.close())


def target_options(fn: F) -> F:
    """Add ``--database`` and ``--app`` (also read from UNDERWAY_DATABASE / UNDERWAY_APP)."""
    fn = click.option(
        "--app",
        metavar="MODULE:ATTR",
        envvar="UNDERWAY_APP",
        help="Use this Jobs app's database (and its workers' names).",
    )(fn)
    fn = click.option(
        "--database",
        metavar="URL",
        envvar="UNDERWAY_DATABASE",
        help="Database URL, e.g. sqlite:///underway.db (overrides the app's).",
    )(fn)
    return fn


# -- formatting -------------------------------------------------------------------------------


def _when(at: datetime | None) -> str:
    return "-" if at is None else at.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _last_error(job: Job[Any], width: int = 60) -> str:
    if not job.errors:
        return ""
    text = job.errors[-1].error.splitlines()[0] if job.errors[-1].error else ""
    return text if len(text) <= width else text[: width - 1] + "…"


def _list_lines(found: list[Job[Any]]) -> list[str]:
    rows = [
        [
            j.id,
            j.state.value,
            j.queue,
            j.worker,
            f"{j.attempt}/{j.max_attempts}",
            _when(j.scheduled_at),
            _last_error(j),
        ]
        for j in found
    ]
    headers = ["ID", "STATE", "QUEUE", "WORKER", "ATTEMPT", "SCHEDULED AT", "LAST ERROR"]
    return table(headers, rows, align=">")


def _show_lines(job: Job[Any]) -> list[str]:
    fields: list[tuple[str, object]] = [
        ("id", job.id),
        ("state", job.state.value),
        ("queue", job.queue),
        ("worker", job.worker),
        ("attempt", f"{job.attempt} of {job.max_attempts}"),
        ("priority", job.priority),
        ("tags", ", ".join(job.tags) or "-"),
        ("args", json.dumps(job.args, default=str)),
        ("meta", json.dumps(job.meta, default=str)),
        ("inserted at", _when(job.inserted_at)),
        ("scheduled at", _when(job.scheduled_at)),
        ("attempted at", _when(job.attempted_at)),
        ("attempted by", job.attempted_by or "-"),
        ("completed at", _when(job.completed_at)),
        ("discarded at", _when(job.discarded_at)),
        ("cancelled at", _when(job.cancelled_at)),
        ("result", "-" if job.result is None else json.dumps(job.result, default=str)),
    ]
    width = max(len(name) for name, _ in fields)
    lines = [f"{name.rjust(width)}: {value}" for name, value in fields]
    lines.append(f"{'errors'.rjust(width)}: {len(job.errors) or 'none'}")
    for err in job.errors:
        lines.append(f"  attempt {err.attempt} at {_when(err.at)}: {err.error}")
        if err.traceback:
            lines.extend("    " + line for line in err.traceback.rstrip().splitlines())
    return lines


# -- time ranges ------------------------------------------------------------------------------


class IsoTime(click.ParamType[datetime, "str | datetime"]):
    """An ISO 8601 date or datetime; without an offset it is local time."""

    name = "datetime"

    def convert(
        self, value: str | datetime, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            parsed = datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(
                f"{value!r} is not an ISO 8601 date or datetime (for example 2024-05-01, "
                "2024-05-01T12:30 or 2024-05-01T12:30:00+00:00)",
                param,
                ctx,
            )
        if parsed.tzinfo is not None:
            return parsed
        try:
            return parsed.astimezone()
        except (ValueError, OverflowError):
            self.fail(
                f"{value!r} is out of range in local time (give an offset, for example "
                f"{parsed.isoformat()}+00:00)",
                param,
                ctx,
            )


TIME_FILTERS = ("inserted_after", "inserted_before", "finished_after", "finished_before")
_TIME_HELP = {
    "inserted_after": "Only jobs inserted at or after this time.",
    "inserted_before": "Only jobs inserted before this time.",
    "finished_after": "Only jobs finished (completed, discarded, cancelled) at or after this time.",
    "finished_before": "Only jobs finished before this time.",
}


def time_options(fn: F) -> F:
    """Add ``--inserted-after``/``--inserted-before``/``--finished-after``/
    ``--finished-before`` (ISO 8601; local time without an offset)."""
    for name in reversed(TIME_FILTERS):
        fn = click.option(
            f"--{name.replace('_', '-')}",
            name,
            type=IsoTime(),
            metavar="WHEN",
            help=_TIME_HELP[name] + " ISO 8601; local time without an offset.",
        )(fn)
    return fn


# -- commands ---------------------------------------------------------------------------------


def _missing(job_id: int) -> FailError:
    return FailError(f"no job with id {job_id}")


@click.group("jobs")
def jobs_group() -> None:
    """Inspect and change jobs: list, show, retry, cancel, delete."""


@jobs_group.command("list")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice([s.value for s in STATES]),
    help="Only jobs in this state (repeatable).",
)
@click.option("--queue", help="Only jobs of this queue.")
@click.option("--worker", help="Only jobs of this worker (its full name).")
@time_options
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@target_options
def list_command(
    states: tuple[str, ...],
    queue: str | None,
    worker: str | None,
    limit: int,
    app: str | None,
    database: str | None,
    **times: datetime | None,
) -> None:
    """List jobs, newest first."""
    filters: dict[str, Any] = {"state": states or None, "queue": queue, "worker": worker, **times}
    try:
        job_filter(filters)  # a bad filter is a usage error, said before the database is read
    except ConfigError as exc:
        raise AppError(str(exc)) from None
    with open_jobs(app, database) as jobs:
        found = jobs.list_jobs_sync(limit=limit, **filters)
    if not found:
        click.echo("no jobs match")
        return
    for line in _list_lines(found):
        click.echo(line)


@jobs_group.command("show")
@click.argument("job_id", type=int)
@target_options
def show_command(job_id: int, app: str | None, database: str | None) -> None:
    """Show every field of one job, with its errors and their tracebacks."""
    with open_jobs(app, database) as jobs:
        job = jobs.get_job_sync(job_id)
    if job is None:
        raise _missing(job_id)
    for line in _show_lines(job):
        click.echo(line)


_ACTIONS: dict[str, tuple[tuple[JobState, ...], str, str]] = {
    # action: (its states, its verb, its participle)
    "retry": (BULK_RETRY_STATES, "retry", "retried"),
    "cancel": (BULK_CANCEL_STATES, "cancel", "cancelled"),
    "delete": (BULK_DELETE_STATES, "delete", "deleted"),
}


def filter_options(action: str) -> Callable[[F], F]:
    """Add the filters of a bulk ``action`` and ``--yes``."""
    states = [s.value for s in _ACTIONS[action][0]]

    def add(fn: F) -> F:
        for option in reversed(
            [
                click.option(
                    "--state",
                    "states",
                    multiple=True,
                    type=click.Choice(states),
                    help="Only jobs in this state (repeatable).",
                ),
                click.option(
                    "--queue", "queues", multiple=True, help="Only jobs of this queue (repeatable)."
                ),
                click.option(
                    "--worker",
                    "workers",
                    multiple=True,
                    help="Only jobs of this worker, by its full name (repeatable).",
                ),
                click.option(
                    "--tag",
                    "tags",
                    multiple=True,
                    help="Only jobs with this tag (repeatable: all).",
                ),
                click.option("--node", help="Only jobs whose last attempt ran on this node."),
                time_options,
                click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation."),
            ]
        ):
            fn = option(fn)
        return fn

    return add


def _filters(
    states: tuple[str, ...],
    queues: tuple[str, ...],
    workers: tuple[str, ...],
    tags: tuple[str, ...],
    node: str | None,
    times: Mapping[str, datetime | None],
) -> dict[str, Any]:
    """The API's filters for the options given (those not given are left out)."""
    given: dict[str, Any] = {
        "state": states,
        "queue": queues,
        "worker": workers,
        "tags": tags,
        "node": node,
        **times,
    }
    return {name: value for name, value in given.items() if value}


def _describe(filters: dict[str, Any]) -> str:
    parts = []
    for name, value in filters.items():
        if isinstance(value, datetime):
            parts.append(f"{name.replace('_', ' ')} {value.isoformat(sep=' ')}")
            continue
        values = value if isinstance(value, tuple) else (value,)
        parts.append(
            f"{name} {' or '.join(values)}" if name != "tags" else f"tags {', '.join(values)}"
        )
    return "; ".join(parts)


def _confirm(action: str, filters: dict[str, Any]) -> None:
    """Ask before a bulk action (``click.Abort`` when refused or when nobody can answer)."""
    states, verb, _ = _ACTIONS[action]
    names = ", ".join(s.value for s in states)
    if filters:
        kind = "" if "state" in filters else f"{names} "
        click.confirm(
            f"{verb.capitalize()} every {kind}job matching {_describe(filters)}?", abort=True
        )
        return
    click.secho(
        f"Warning: no filter given. This will {verb} EVERY job that is {names}, in every "
        "queue, on every node.",
        fg="red",
        bold=True,
        err=True,
    )
    click.confirm(f"{verb.capitalize()} every {names} job in the database?", abort=True)


def _run_bulk(
    action: str, filters: dict[str, Any], yes: bool, app: str | None, database: str | None
) -> None:
    """Confirm unless ``yes``, run the bulk ``action`` and print how many jobs it changed."""
    try:
        bulk_filter(action, filters, everything=not filters)  # a bad filter: said before asking
    except ConfigError as exc:
        raise AppError(str(exc)) from None
    with open_jobs(app, database) as jobs:
        if not yes:
            _confirm(action, filters)
        run = {
            "retry": jobs.retry_all_jobs_sync,
            "cancel": jobs.cancel_all_jobs_sync,
            "delete": jobs.delete_all_jobs_sync,
        }[action]
        try:
            count = run(all=not filters, **filters)
        except ConfigError as exc:
            raise AppError(str(exc)) from None
    click.echo(f"{count} job{'' if count == 1 else 's'} {_ACTIONS[action][2]}")


def _refuse_filters(filters: dict[str, Any]) -> None:
    """A command given a job id acts on that job alone: filters beside it are an error."""
    if filters:
        raise AppError("give a job id or filters, not both")


@jobs_group.command("retry")
@click.argument("job_id", type=int, required=False)
@filter_options("retry")
@target_options
def retry_command(
    job_id: int | None,
    states: tuple[str, ...],
    queues: tuple[str, ...],
    workers: tuple[str, ...],
    tags: tuple[str, ...],
    node: str | None,
    yes: bool,
    app: str | None,
    database: str | None,
    **times: datetime | None,
) -> None:
    """Make a job available to run now (any state but executing), or every job matching
    the filters (scheduled, retryable, completed, discarded or cancelled ones)."""
    filters = _filters(states, queues, workers, tags, node, times)
    if job_id is None:
        _run_bulk("retry", filters, yes, app, database)
        return
    _refuse_filters(filters)
    with open_jobs(app, database) as jobs:
        job = jobs.retry_job_sync(job_id)
    if job is None:
        raise _missing(job_id)
    if job.state is not JobState.AVAILABLE:
        raise FailError(f"job {job_id} is {job.state.value}; it can be retried once it finishes")
    click.echo(
        f"job {job_id} is available again ({job.attempt} of {job.max_attempts} attempts used)"
    )


@jobs_group.command("cancel")
@click.argument("job_id", type=int, required=False)
@filter_options("cancel")
@target_options
def cancel_command(
    job_id: int | None,
    states: tuple[str, ...],
    queues: tuple[str, ...],
    workers: tuple[str, ...],
    tags: tuple[str, ...],
    node: str | None,
    yes: bool,
    app: str | None,
    database: str | None,
    **times: datetime | None,
) -> None:
    """Cancel a job that has not finished, or every such job matching the filters.

    A job executing on a node is marked cancelled at once and interrupted there; what its
    run returns is ignored.
    """
    filters = _filters(states, queues, workers, tags, node, times)
    if job_id is None:
        _run_bulk("cancel", filters, yes, app, database)
        return
    _refuse_filters(filters)
    with open_jobs(app, database) as jobs:
        before = jobs.get_job_sync(job_id)
        if before is None:
            raise _missing(job_id)
        if before.state in FINISHED_STATES:
            raise FailError(f"job {job_id} already {before.state.value}; nothing to cancel")
        job = jobs.cancel_job_sync(job_id)
    if job is None or job.state is not JobState.CANCELLED:
        state = "gone" if job is None else job.state.value
        raise FailError(f"job {job_id} could not be cancelled (it is {state})")
    click.echo(f"job {job_id} cancelled (was {before.state.value})")


@jobs_group.command("delete")
@filter_options("delete")
@target_options
def delete_command(
    states: tuple[str, ...],
    queues: tuple[str, ...],
    workers: tuple[str, ...],
    tags: tuple[str, ...],
    node: str | None,
    yes: bool,
    app: str | None,
    database: str | None,
    **times: datetime | None,
) -> None:
    """Delete every finished (completed, discarded or cancelled) job matching the filters.

    Waiting and executing jobs are never deleted: cancel them first.
    """
    _run_bulk("delete", _filters(states, queues, workers, tags, node, times), yes, app, database)
