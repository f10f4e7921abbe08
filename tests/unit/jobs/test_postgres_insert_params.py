"""The PostgreSQL insert's parameters: a single job takes a shorter path to the same values."""

from __future__ import annotations

import json

import pytest

from underway.jobs import JobSpec, JobState
from underway.jobs.engines.postgres import _insert as _pg_insert
from underway.jobs.engines.postgres._insert import insert_params, insert_steps
from underway.jobs.job import to_datetime

NOW = 1_700_000_000.25


def spec(**options: object) -> JobSpec:
    fields: dict[str, object] = {
        "worker": "tests.w",
        "queue": "default",
        "args": {"a": 1},
        "args_json": '{"a":1}',
    }
    return JobSpec(**{**fields, **options})  # type: ignore[arg-type]


SPECS = [
    spec(),
    spec(queue="mail", priority=3, max_attempts=5, tags=("x", "y"), meta_json='{"m":1}'),
    spec(scheduled_at=NOW + 60),
    spec(scheduled_at=NOW - 60),
    spec(scheduled_at=NOW),
    spec(unique_key="k", unique_states=0b1111, unique_period=30.0),
    spec(unique_key="k", unique_states=0b11111),  # forever
]


@pytest.mark.parametrize("job", SPECS)
def test_one_job_gets_the_parameters_of_a_batch_of_one(job: JobSpec) -> None:
    at = to_datetime(NOW)
    assert insert_params([job], NOW) == _pg_insert._batch_params([job], NOW, at)


def test_one_job_params_in_the_statements_order() -> None:
    job = spec(scheduled_at=NOW + 60, unique_key="k", unique_states=3, unique_period=30.0)
    params = insert_params([job], NOW)

    assert params[:12] == (
        JobState.SCHEDULED.value,
        "default",
        "tests.w",
        "{}",
        "[]",
        0,
        20,
        to_datetime(NOW),
        to_datetime(NOW + 60),
        "k",
        3,
        to_datetime(NOW + 30),
    )
    assert params[12:] == (None, None, None, ['{"a":1}'], *[None] * 8)  # arrays: args only


def test_a_batch_of_jobs_without_keys_is_one_insert() -> None:
    jobs = [spec(args={"a": i}, args_json=json.dumps({"a": i})) for i in range(3)]
    steps = insert_steps(jobs, NOW)

    sql, params = next(steps)
    assert sql == _pg_insert.statements()["insert"]
    assert params == insert_params(jobs, NOW)
    with pytest.raises(StopIteration) as done:
        steps.send([(12, None), (10, None), (11, None)])  # in any order
    inserted = done.value.value
    assert [(j.id, j.args) for j in inserted] == [(10, {"a": 0}), (11, {"a": 1}), (12, {"a": 2})]
    assert all(j.state is JobState.AVAILABLE and not j.conflict for j in inserted)
