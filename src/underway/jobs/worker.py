"""Workers: the functions or classes that perform jobs, with their options."""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any, TypedDict

import underway.jobs.backoff as backoff_policy
from underway.errors import ConfigError, EnqueueError
from underway.jobs._enqueuer import Enqueuer
from underway.jobs._queue_name import validate_queue_name
from underway.jobs.job import Job, JobSpec
from underway.jobs.schema import check_schema, dump_args, load_args
from underway.jobs.unique import Unique

__all__ = ["Worker", "WorkerOptions", "validate_queue_name"]

_MISSING: Any = object()
Backoff = Callable[[Job[Any]], float] | float | int


class WorkerOptions(TypedDict, total=False):
    """The options of :meth:`underway.jobs.Jobs.worker` (see :class:`Worker`)."""

    name: str | None
    queue: str
    max_attempts: int
    priority: int
    tags: Iterable[str]
    timeout: float | None
    backoff: Backoff | None
    unique: Unique | None
    args: Any
    record_result: bool


def _check_priority(priority: object) -> int:
    if not isinstance(priority, int) or isinstance(priority, bool) or not 0 <= priority <= 9:
        raise ConfigError(f"priority must be an int from 0 (first) to 9, got {priority!r}")
    return priority


def _check_max_attempts(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"max_attempts must be an int >= 1, got {value!r}")
    return value


def _check_tags(tags: Iterable[str]) -> tuple[str, ...]:
    if isinstance(tags, str):
        raise ConfigError(f"tags must be a list of strings, got the string {tags!r}")
    out = tuple(tags)
    if any(not isinstance(t, str) or not t for t in out):
        raise ConfigError(f"tags must be non-empty strings, got {list(out)!r}")
    return out


_ENCODE = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def _dumps(value: Any, what: str) -> str:
    if not value:
        return "{}" if isinstance(value, dict) else _ENCODE(value)
    try:
        text = _ENCODE(value)
    except (TypeError, ValueError) as exc:
        raise EnqueueError(f"{what} must be JSON-serialisable: {exc}") from None
    if "\\u0000" in text or "\\ud" in text:
        _refuse_unstorable(text, what)
    return text


def _refuse_unstorable(text: str, what: str) -> None:
    """Refuse NUL characters and lone surrogates, which PostgreSQL's jsonb cannot hold."""
    decoded = json.dumps(json.loads(text), ensure_ascii=False)
    if "\\u0000" in decoded:
        raise EnqueueError(
            f"{what} contain a NUL character (\\x00), which the database cannot store; "
            "encode binary data first (for example as base64)"
        )
    try:
        decoded.encode("utf-8")
    except UnicodeEncodeError:
        raise EnqueueError(
            f"{what} contain a lone surrogate (text decoded with surrogateescape, such as a "
            "file name that is not valid UTF-8); decode it as UTF-8 with errors='replace'"
        ) from None


class Worker:
    """A registered worker. Build one with :meth:`underway.jobs.Jobs.worker`.

    Calling :meth:`enqueue` (or :meth:`enqueue_sync` from sync code) inserts a job;
    :meth:`new` builds a job for :meth:`~underway.jobs.Jobs.enqueue_many`. ``jobs`` is
    where :meth:`enqueue` inserts: the app that registered the worker (anything with its
    ``enqueue_many`` and ``enqueue_many_sync``).
    """

    def __init__(
        self,
        target: Callable[..., Any] | type,
        *,
        jobs: Enqueuer,
        name: str | None = None,
        queue: str = "default",
        max_attempts: int = 20,
        priority: int = 0,
        tags: Iterable[str] = (),
        timeout: float | None = None,
        backoff: Backoff | None = None,
        unique: Unique | None = None,
        args: Any = None,
        record_result: bool = False,
    ) -> None:
        self.jobs = jobs
        self.queue = validate_queue_name(queue)
        self.max_attempts = _check_max_attempts(max_attempts)
        self.priority = _check_priority(priority)
        self.tags = _check_tags(tags)
        if timeout is not None and (
            not isinstance(timeout, int | float) or isinstance(timeout, bool) or not timeout > 0
        ):
            raise ConfigError(f"timeout must be seconds > 0 or None, got {timeout!r}")
        self.timeout = None if timeout is None else float(timeout)
        if isinstance(backoff, int | float) and not isinstance(backoff, bool):
            backoff_policy.constant(backoff)
        elif backoff is not None and not callable(backoff):
            raise ConfigError(f"backoff must be seconds or a function of the job, got {backoff!r}")
        self._backoff = backoff
        if unique is not None and not isinstance(unique, Unique):
            raise ConfigError(f"unique must be an underway.jobs.Unique, got {unique!r}")
        self.unique = unique
        if args is not None:
            check_schema(args)
        self.schema = args
        self.record_result = bool(record_result)
        self.perform_fn, self.is_async = _resolve_target(target)
        self.target = target
        qualname = getattr(target, "__qualname__", None) or repr(target)
        self.name = f"{target.__module__}.{qualname}" if name is None else name
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"worker name must be a non-empty string, got {name!r}")
        self.__doc__ = target.__doc__
        self.__wrapped__ = target

    def __repr__(self) -> str:
        return f"<Worker {self.name} queue={self.queue}>"

    def backoff(self, job: Job[Any]) -> float:
        """Seconds to wait before retrying ``job`` after its current attempt failed."""
        custom = self._backoff
        if custom is None and isinstance(self.target, type):
            custom = getattr(self.perform_owner, "backoff", None)
        if custom is None:
            return backoff_policy.exponential(job.attempt)
        if isinstance(custom, int | float):
            return float(custom)
        return float(custom(job))

    @property
    def perform_owner(self) -> Any:
        """The instance whose ``perform`` runs jobs, for class-based workers."""
        return getattr(self.perform_fn, "__self__", None)

    def new(
        self,
        args: Any = None,
        *,
        queue: str | None = None,
        priority: int | None = None,
        schedule_in: float | None = None,
        scheduled_at: datetime | float | None = None,
        tags: Iterable[str] | None = None,
        meta: Mapping[str, Any] | None = None,
        max_attempts: int | None = None,
        unique: Unique | None = _MISSING,
    ) -> JobSpec:
        """Validate ``args`` and options and build a job to insert.

        Raises:
            EnqueueError: Args are not JSON-serialisable, fail the schema, or an option is
                invalid. Nothing is written.
        """
        try:
            data = dump_args(self.schema, args)
        except (TypeError, ValueError) as exc:
            raise EnqueueError(f"invalid args for worker {self.name}: {exc}") from None
        args_json = _dumps(data, f"args of {self.name}")
        meta_dict = dict(meta or {})
        meta_json = _dumps(meta_dict, f"meta of {self.name}")
        try:
            q = self.queue if queue is None else validate_queue_name(queue)
            prio = self.priority if priority is None else _check_priority(priority)
            attempts = (
                self.max_attempts if max_attempts is None else _check_max_attempts(max_attempts)
            )
            tag_tuple = self.tags if tags is None else _check_tags(tags)
        except ConfigError as exc:
            raise EnqueueError(str(exc)) from None
        at = _schedule(schedule_in, scheduled_at)
        uniq = self.unique if unique is _MISSING else unique
        key = None
        if uniq is not None:
            key = uniq.key(worker=self.name, queue=q, args=data, meta=meta_dict)
        return JobSpec(
            worker=self.name,
            queue=q,
            args=data,
            args_json=args_json,
            meta_json=meta_json,
            tags=tag_tuple,
            priority=prio,
            max_attempts=attempts,
            scheduled_at=at,
            unique_key=key,
            unique_states=uniq.state_mask if uniq else 0,
            unique_period=uniq.period if uniq else None,
        )

    async def enqueue(self, args: Any = None, *, conn: Any = None, **options: Any) -> Job[Any]:
        """Insert one job and return it (``job.conflict`` tells a unique duplicate).

        Args:
            args: A dict, or an instance of the worker's args schema.
            conn: The application's own database connection; the job is inserted inside
                its current transaction, so a rollback leaves no job.
            **options: ``queue``, ``priority``, ``schedule_in``, ``scheduled_at``,
                ``tags``, ``meta``, ``max_attempts``, ``unique`` (see :meth:`new`).
        """
        return (await self.jobs.enqueue_many([self.new(args, **options)], conn=conn))[0]

    def enqueue_sync(self, args: Any = None, *, conn: Any = None, **options: Any) -> Job[Any]:
        """Like :meth:`enqueue`, from synchronous code (Flask, Django, scripts)."""
        return self.jobs.enqueue_many_sync([self.new(args, **options)], conn=conn)[0]

    def typed_job(self, job: Job[Any]) -> Job[Any]:
        """``job`` with its args loaded into the worker's schema, if it has one."""
        if self.schema is None:
            return job
        return replace(job, args=load_args(self.schema, job.args))

    def call(self, job: Job[Any]) -> Awaitable[Any] | Any:
        """Run the worker's body for ``job`` (a coroutine for async workers)."""
        return self.perform_fn(job)


def _schedule(schedule_in: float | None, scheduled_at: datetime | float | None) -> float | None:
    if schedule_in is not None and scheduled_at is not None:
        raise EnqueueError("give schedule_in or scheduled_at, not both")
    if schedule_in is not None:
        if not isinstance(schedule_in, int | float) or schedule_in < 0:
            raise EnqueueError(f"schedule_in must be seconds >= 0, got {schedule_in!r}")
        return time.time() + schedule_in
    if scheduled_at is None:
        return None
    if isinstance(scheduled_at, datetime):
        if scheduled_at.tzinfo is None:
            raise EnqueueError("scheduled_at must be timezone-aware (for example UTC)")
        return scheduled_at.timestamp()
    if isinstance(scheduled_at, int | float):
        return float(scheduled_at)
    raise EnqueueError(f"scheduled_at must be a datetime or epoch seconds, got {scheduled_at!r}")


def _resolve_target(target: Callable[..., Any] | type) -> tuple[Callable[..., Any], bool]:
    if isinstance(target, type):
        perform = getattr(target, "perform", None)
        if perform is None:
            raise ConfigError(f"worker class {target.__name__} needs a perform(self, job) method")
        try:
            instance = target()
        except TypeError as exc:
            raise ConfigError(
                f"worker class {target.__name__} must be constructible with no arguments: {exc}"
            ) from None
        bound = instance.perform
        return bound, inspect.iscoroutinefunction(bound)
    if not callable(target):
        raise ConfigError(f"a worker must be a function or a class, got {target!r}")
    return target, inspect.iscoroutinefunction(target)
