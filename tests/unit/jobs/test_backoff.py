"""Retry delays: the Oban-style default, constants, and the worker's choice of policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from underway.errors import ConfigError
from underway.jobs import Job, Jobs, JobState, Worker
from underway.jobs.backoff import constant, exponential


def job_at(attempt: int) -> Job[dict[str, Any]]:
    return Job(
        id=1, state=JobState.EXECUTING, queue="default", worker="w", args={}, attempt=attempt
    )


@pytest.fixture
def jobs(tmp_path: Path) -> Jobs:
    return Jobs(f"sqlite:///{tmp_path / 'jobs.db'}")


# -- the default: 15 + 2**attempt, up to +10% --------------------------------------------


@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 10, 17])
def test_exponential_without_jitter_is_base_plus_power_of_two(attempt: int) -> None:
    assert exponential(attempt, rand=0.0) == 15 + 2**attempt


@pytest.mark.parametrize("attempt", [1, 4, 12])
def test_exponential_jitter_adds_at_most_ten_percent(attempt: int) -> None:
    plain = 15 + 2**attempt
    assert exponential(attempt, rand=0.5) == pytest.approx(plain * 1.05)
    assert exponential(attempt, rand=0.999999) == pytest.approx(plain * 1.1, rel=1e-6)
    assert exponential(attempt, rand=0.999999) < plain * 1.1


def test_exponential_random_jitter_stays_in_range_and_varies() -> None:
    delays = [exponential(6) for _ in range(200)]
    plain = 15 + 2**6
    assert all(plain <= d < plain * 1.1 for d in delays)
    assert len(set(delays)) > 1, "jitter must spread retries of jobs that failed together"


def test_exponential_grows_with_each_attempt() -> None:
    delays = [exponential(a, rand=0.0) for a in range(1, 21)]
    assert delays == sorted(delays)
    assert len(set(delays)) == len(delays)


@pytest.mark.parametrize("attempt", [21, 30, 100, 10_000])
def test_exponential_exponent_is_capped(attempt: int) -> None:
    assert exponential(attempt, rand=0.0) == 15 + 2**20
    assert exponential(attempt, rand=0.999) < (15 + 2**20) * 1.1


@pytest.mark.parametrize("attempt", [0, -3])
def test_exponential_before_any_attempt_is_the_base_plus_one(attempt: int) -> None:
    assert exponential(attempt, rand=0.0) == 16


def test_exponential_base_and_jitter_are_options() -> None:
    assert exponential(3, base=0.0, jitter=0.0, rand=0.9) == 8
    assert exponential(3, base=2.0, jitter=0.5, rand=1.0) == pytest.approx(15.0)


# -- constant ---------------------------------------------------------------------------


@pytest.mark.parametrize("seconds", [0, 1, 2.5, 3600])
def test_constant_returns_the_same_float(seconds: float) -> None:
    assert constant(seconds) == float(seconds)
    assert isinstance(constant(seconds), float)


@pytest.mark.parametrize("seconds", [-1, -0.001, float("nan")])
def test_constant_rejects_negative_or_nan_seconds(seconds: float) -> None:
    with pytest.raises(ConfigError, match=">= 0"):
        constant(seconds)


# -- a worker's backoff ---------------------------------------------------------------


def test_worker_defaults_to_exponential_of_the_job_attempt(jobs: Jobs) -> None:
    @jobs.worker
    async def plain(job: Job[Any]) -> None:
        return None

    for attempt in (1, 3, 8, 25):
        low = 15 + 2 ** min(attempt, 20)
        delay = plain.backoff(job_at(attempt))
        assert low <= delay < low * 1.1


def test_worker_number_backoff_is_constant(jobs: Jobs) -> None:
    @jobs.worker(backoff=7)
    async def steady(job: Job[Any]) -> None:
        return None

    assert [steady.backoff(job_at(a)) for a in (1, 2, 10)] == [7.0, 7.0, 7.0]


def test_worker_zero_backoff_retries_at_once(jobs: Jobs) -> None:
    @jobs.worker(backoff=0)
    async def eager(job: Job[Any]) -> None:
        return None

    assert eager.backoff(job_at(4)) == 0.0


def test_worker_function_backoff_receives_the_job(jobs: Jobs) -> None:
    seen: list[int] = []

    def linear(job: Job[Any]) -> float:
        seen.append(job.attempt)
        return job.attempt * 10

    @jobs.worker(backoff=linear)
    async def custom(job: Job[Any]) -> None:
        return None

    assert custom.backoff(job_at(3)) == 30.0
    assert isinstance(custom.backoff(job_at(1)), float)
    assert seen == [3, 1]


def test_class_worker_backoff_method_is_used(jobs: Jobs) -> None:
    @jobs.worker
    class Importer:
        def __init__(self) -> None:
            self.calls = 0

        async def perform(self, job: Job[Any]) -> None:
            return None

        def backoff(self, job: Job[Any]) -> float:
            self.calls += 1
            return 2.0 * job.attempt

    importer = cast(Worker, Importer)  # mypy keeps the type of a decorated class
    assert importer.backoff(job_at(5)) == 10.0
    assert importer.perform_owner.calls == 1


def test_class_worker_without_backoff_method_uses_the_default(jobs: Jobs) -> None:
    @jobs.worker
    class Plain:
        async def perform(self, job: Job[Any]) -> None:
            return None

    plain = cast(Worker, Plain)  # mypy keeps the type of a decorated class
    assert 15 + 2**2 <= plain.backoff(job_at(2)) < (15 + 2**2) * 1.1


def test_backoff_option_wins_over_the_class_method(jobs: Jobs) -> None:
    @jobs.worker(backoff=3)
    class Both:
        async def perform(self, job: Job[Any]) -> None:
            return None

        def backoff(self, job: Job[Any]) -> float:
            return 999.0

    both = cast(Worker, Both)  # mypy keeps the type of a decorated class
    assert both.backoff(job_at(1)) == 3.0


@pytest.mark.parametrize("bad", [-1, -0.5, float("nan"), "10", True, object()])
def test_bad_backoff_is_rejected_at_definition(jobs: Jobs, bad: Any) -> None:
    with pytest.raises(ConfigError, match="backoff"):

        @jobs.worker(backoff=bad)
        async def broken(job: Job[Any]) -> None:
            return None
