"""Worker options: ConfigError at definition; EnqueueError at enqueue, with nothing written."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pydantic
import pytest

from underway.errors import ConfigError, EnqueueError
from underway.jobs import Job, Jobs, Unique, Worker


@dataclass
class Resize:
    image_id: int
    width: int = 800


class Invoice(pydantic.BaseModel):
    invoice_id: int
    email: str


@dataclass(frozen=True)
class App:
    jobs: Jobs
    path: Path

    def rows(self) -> int:
        with closing(sqlite3.connect(self.path)) as conn:
            return int(conn.execute("SELECT count(*) FROM underway_jobs").fetchone()[0])


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    path = tmp_path / "jobs.db"
    jobs = Jobs(f"sqlite:///{path}")
    jobs.migrate_sync()
    yield App(jobs, path)
    jobs.engine.close_sync()  # type: ignore[attr-defined]


async def noop(job: Job[Any]) -> None:
    return None


def define(jobs: Jobs, **options: Any) -> Worker:
    return jobs.worker(**options)(noop)


# -- definition ---------------------------------------------------------------------------


def test_defaults(app: App) -> None:
    w = define(app.jobs)
    assert (w.queue, w.max_attempts, w.priority, w.tags, w.timeout) == ("default", 20, 0, (), None)
    assert w.name == f"{noop.__module__}.noop"
    assert app.jobs.workers[w.name] is w


def test_valid_options_are_kept(app: App) -> None:
    w = define(
        app.jobs,
        name="mail.send",
        queue="mail.high:eu-1",
        max_attempts=1,
        priority=9,
        tags=["mail", "eu"],
        timeout=2,
        unique=Unique(),
        args=Resize,
        record_result=True,
    )
    assert (w.name, w.queue, w.max_attempts, w.priority) == ("mail.send", "mail.high:eu-1", 1, 9)
    assert w.tags == ("mail", "eu")
    assert w.timeout == 2.0
    assert w.schema is Resize
    assert w.record_result


@pytest.mark.parametrize("bad", [0, -1, 1.5, "3", True, None])
def test_max_attempts_must_be_an_int_of_at_least_one(app: App, bad: Any) -> None:
    with pytest.raises(ConfigError, match="max_attempts"):
        define(app.jobs, max_attempts=bad)


@pytest.mark.parametrize("bad", [-1, 10, 1.0, "1", True, None])
def test_priority_must_be_an_int_from_0_to_9(app: App, bad: Any) -> None:
    with pytest.raises(ConfigError, match="priority"):
        define(app.jobs, priority=bad)


@pytest.mark.parametrize("bad", ["", " ", "a b", "-mail", "mail/eu", "x" * 129, 5, None])
def test_queue_name_must_be_valid(app: App, bad: Any) -> None:
    with pytest.raises(ConfigError, match="queue"):
        define(app.jobs, queue=bad)


@pytest.mark.parametrize("bad", [0, -1, "10", True, float("nan")])
def test_timeout_must_be_positive_seconds(app: App, bad: Any) -> None:
    with pytest.raises(ConfigError, match="timeout"):
        define(app.jobs, timeout=bad)


@pytest.mark.parametrize("bad", [-5, "fast", [1, 2]])
def test_backoff_must_be_seconds_or_a_function(app: App, bad: Any) -> None:
    with pytest.raises(ConfigError, match="backoff"):
        define(app.jobs, backoff=bad)


@pytest.mark.parametrize("bad", ["urgent", ["ok", ""], [1]])
def test_tags_must_be_a_list_of_strings(app: App, bad: Any) -> None:
    with pytest.raises(ConfigError, match="tags"):
        define(app.jobs, tags=bad)


@pytest.mark.parametrize("bad", [{"period": 60}, 60, True])
def test_unique_must_be_a_unique_value(app: App, bad: Any) -> None:
    with pytest.raises(ConfigError, match="unique"):
        define(app.jobs, unique=bad)


@pytest.mark.parametrize("bad", [dict, int, {"image_id": int}, Resize(1)])
def test_args_schema_must_be_a_dataclass_or_model_class(app: App, bad: Any) -> None:
    with pytest.raises(ConfigError, match="schema"):
        define(app.jobs, args=bad)


def test_class_without_perform_is_rejected(app: App) -> None:
    with pytest.raises(ConfigError, match="perform"):

        @app.jobs.worker
        class NoPerform:
            def run(self, job: Job[Any]) -> None:
                return None


def test_class_needing_constructor_args_is_rejected(app: App) -> None:
    with pytest.raises(ConfigError, match="no arguments"):

        @app.jobs.worker
        class NeedsClient:
            def __init__(self, client: object) -> None:
                self.client = client

            def perform(self, job: Job[Any]) -> None:
                return None


def test_something_not_callable_is_rejected(app: App) -> None:
    with pytest.raises(ConfigError, match="function or a class"):
        app.jobs.worker(42)  # type: ignore[call-overload]


@pytest.mark.parametrize("bad", ["", 7])
def test_worker_name_must_be_a_non_empty_string(app: App, bad: Any) -> None:
    with pytest.raises(ConfigError, match="name"):
        define(app.jobs, name=bad)


def test_duplicate_worker_name_is_rejected(app: App) -> None:
    define(app.jobs, name="reports.build")

    async def other(job: Job[Any]) -> None:
        return None

    with pytest.raises(ConfigError, match="already registered"):
        app.jobs.worker(name="reports.build")(other)
    assert app.jobs.workers["reports.build"].target is noop


def test_same_function_defined_twice_replaces_its_worker(app: App) -> None:
    first = define(app.jobs, queue="a")
    second = define(app.jobs, queue="b")
    assert app.jobs.workers[second.name] is second
    assert first.name == second.name


def test_definition_error_registers_nothing(app: App) -> None:
    with pytest.raises(ConfigError):
        define(app.jobs, name="never", priority=99)
    assert "never" not in app.jobs.workers


def test_config_and_enqueue_errors_are_value_errors() -> None:
    assert issubclass(ConfigError, ValueError)
    assert issubclass(EnqueueError, ValueError)


# -- enqueue: rejected before anything is written -------------------------------------------


NOT_JSON: list[Any] = [
    {"ids": {1, 2}},
    {"when": datetime(2024, 1, 1, tzinfo=UTC)},
    {"ratio": math.nan},
    {"ratio": math.inf},
    {"blob": b"bytes"},
    {"obj": object()},
]


@pytest.mark.parametrize("args", NOT_JSON)
async def test_args_not_json_are_rejected_and_nothing_written(app: App, args: Any) -> None:
    w = define(app.jobs)
    with pytest.raises(EnqueueError, match="JSON"):
        await w.enqueue(args)
    with pytest.raises(EnqueueError, match="JSON"):
        w.enqueue_sync(args)
    assert app.rows() == 0


@pytest.mark.parametrize("args", [[1, 2], "text", 7])
async def test_args_must_be_a_mapping(app: App, args: Any) -> None:
    w = define(app.jobs)
    with pytest.raises(EnqueueError, match="dict"):
        await w.enqueue(args)
    assert app.rows() == 0


async def test_meta_not_json_is_rejected(app: App) -> None:
    w = define(app.jobs)
    with pytest.raises(EnqueueError, match="meta"):
        await w.enqueue({}, meta={"seen": {1}})
    assert app.rows() == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({}, "missing field 'image_id'"),
        ({"width": 10}, "missing field 'image_id'"),
        ({"image_id": 1, "height": 5}, "unknown field"),
        ({"image_id": "1"}, "'image_id'"),
        ({"image_id": 1, "width": 2.5}, "'width'"),
        (None, "missing field"),
    ],
)
async def test_dataclass_schema_failures(app: App, args: Any, message: str) -> None:
    w = define(app.jobs, args=Resize)
    with pytest.raises(EnqueueError, match=message):
        await w.enqueue(args)
    with pytest.raises(EnqueueError, match=message):
        w.enqueue_sync(args)
    assert app.rows() == 0


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"email": "a@b.c"}, "invoice_id"),
        ({"invoice_id": "not a number", "email": "a@b.c"}, "invoice_id"),
        ({"invoice_id": 1}, "email"),
    ],
)
async def test_pydantic_schema_failures(app: App, args: Any, field: str) -> None:
    w = define(app.jobs, args=Invoice)
    with pytest.raises(EnqueueError, match=field):
        await w.enqueue(args)
    assert app.rows() == 0


async def test_schedule_in_and_scheduled_at_together(app: App) -> None:
    w = define(app.jobs)
    at = datetime.now(UTC) + timedelta(minutes=5)
    with pytest.raises(EnqueueError, match="not both"):
        await w.enqueue({}, schedule_in=60, scheduled_at=at)
    assert app.rows() == 0


async def test_naive_datetime_is_rejected(app: App) -> None:
    w = define(app.jobs)
    with pytest.raises(EnqueueError, match="timezone"):
        await w.enqueue({}, scheduled_at=datetime(2030, 1, 1, 12, 0))
    assert app.rows() == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"schedule_in": -1}, "schedule_in"),
        ({"schedule_in": "soon"}, "schedule_in"),
        ({"scheduled_at": "tomorrow"}, "scheduled_at"),
        ({"priority": 10}, "priority"),
        ({"priority": -1}, "priority"),
        ({"queue": "bad queue"}, "queue"),
        ({"queue": ""}, "queue"),
        ({"tags": "one"}, "tags"),
        ({"max_attempts": 0}, "max_attempts"),
    ],
)
async def test_invalid_per_job_options(app: App, options: dict[str, Any], message: str) -> None:
    w = define(app.jobs)
    with pytest.raises(EnqueueError, match=message):
        await w.enqueue({}, **options)
    with pytest.raises(EnqueueError, match=message):
        w.enqueue_sync({}, **options)
    assert app.rows() == 0


async def test_enqueue_many_rejects_the_whole_batch(app: App) -> None:
    w = define(app.jobs)
    with pytest.raises(EnqueueError, match=r"worker\.new"):
        await app.jobs.enqueue_many([w.new({"n": 1}), {"n": 2}])  # type: ignore[list-item]
    with pytest.raises(EnqueueError, match=r"worker\.new"):
        app.jobs.enqueue_many_sync([w.new({"n": 1}), "oops"])  # type: ignore[list-item]
    assert app.rows() == 0


async def test_valid_enqueue_after_errors_writes_one_row(app: App) -> None:
    w = define(app.jobs)
    with pytest.raises(EnqueueError):
        await w.enqueue({"x": {1}})
    job = await w.enqueue({"x": [1]})
    assert app.rows() == 1
    assert job.args == {"x": [1]}


async def test_per_job_options_override_the_worker(app: App) -> None:
    w = define(app.jobs, queue="a", priority=5, tags=["w"], max_attempts=3)
    at = datetime(2031, 5, 1, tzinfo=UTC)
    job = await w.enqueue(
        {"n": 1},
        queue="b",
        priority=1,
        tags=["j"],
        max_attempts=9,
        scheduled_at=at,
        meta={"trace": "t1"},
    )
    assert (job.queue, job.priority, job.tags, job.max_attempts) == ("b", 1, ("j",), 9)
    assert job.scheduled_at == at
    assert job.meta == {"trace": "t1"}
    default = await w.enqueue({"n": 2})
    assert (default.queue, default.priority, default.tags, default.max_attempts) == (
        "a",
        5,
        ("w",),
        3,
    )
