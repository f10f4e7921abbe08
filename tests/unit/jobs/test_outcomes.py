"""What a worker returns or raises, and the job's next state decided from it."""

from __future__ import annotations

import dataclasses

import pytest

from underway.jobs import Cancel, Error, JobState, Snooze
from underway.jobs.outcomes import Ack, decide

NOW = 1_700_000_000.0


def raised(exc: Exception) -> Exception:
    """``exc`` after it was raised and caught, so it carries a traceback."""

    def failing_body() -> None:
        raise exc

    try:
        failing_body()
    except Exception as caught:
        return caught
    raise AssertionError("unreachable")


@pytest.mark.parametrize("value", [None, 0, "done", {"rows": 3}, [1, 2]])
def test_any_plain_value_completes_the_job(value: object) -> None:
    ack = decide(7, 1, 20, value, now=NOW, backoff=30.0)
    assert ack == Ack(7, JobState.COMPLETED, NOW, 1)
    assert ack.scheduled_at is None
    assert ack.error is None
    assert not ack.snoozed


def test_completed_job_records_the_given_result() -> None:
    ack = decide(7, 2, 20, {"rows": 3}, now=NOW, backoff=0.0, result='{"rows":3}')
    assert ack.state is JobState.COMPLETED
    assert ack.result == '{"rows":3}'
    assert ack.attempt == 2


@pytest.mark.parametrize("outcome", [Error("x"), Cancel("y"), Snooze(5), RuntimeError("z")])
def test_result_is_recorded_only_for_completed_jobs(outcome: object) -> None:
    ack = decide(7, 1, 20, outcome, now=NOW, backoff=1.0, result='"kept?"')
    assert ack.result is None


def test_snooze_reschedules_without_counting_the_attempt() -> None:
    ack = decide(7, 3, 20, Snooze(90), now=NOW, backoff=999.0)
    assert ack.state is JobState.SCHEDULED
    assert ack.scheduled_at == NOW + 90
    assert ack.snoozed
    assert ack.error is None


def test_snooze_on_the_last_attempt_is_not_a_failure() -> None:
    ack = decide(7, 5, 5, Snooze(1.5), now=NOW, backoff=0.0)
    assert ack.state is JobState.SCHEDULED
    assert ack.scheduled_at == NOW + 1.5
    assert ack.snoozed


@pytest.mark.parametrize("seconds", [-1, -0.1, "10", None])
def test_snooze_needs_non_negative_seconds(seconds: object) -> None:
    with pytest.raises(ValueError, match="Snooze"):
        Snooze(seconds)  # type: ignore[arg-type]


def test_cancel_is_final_and_keeps_the_reason() -> None:
    ack = decide(7, 1, 20, Cancel("customer left"), now=NOW, backoff=30.0)
    assert ack.state is JobState.CANCELLED
    assert ack.scheduled_at is None
    assert ack.error is not None
    assert "customer left" in ack.error
    assert not ack.snoozed


def test_cancel_has_a_default_reason() -> None:
    ack = decide(7, 1, 20, Cancel(), now=NOW, backoff=0.0)
    assert ack.state is JobState.CANCELLED
    assert ack.error


def test_error_value_retries_after_the_backoff() -> None:
    ack = decide(7, 2, 20, Error("upstream 503"), now=NOW, backoff=45.0)
    assert ack.state is JobState.RETRYABLE
    assert ack.scheduled_at == NOW + 45.0
    assert ack.error == "upstream 503"
    assert ack.traceback is None


def test_exception_retries_with_its_type_message_and_traceback() -> None:
    ack = decide(7, 1, 3, raised(KeyError("file_id")), now=NOW, backoff=16.0)
    assert ack.state is JobState.RETRYABLE
    assert ack.scheduled_at == NOW + 16.0
    assert ack.error == "KeyError: 'file_id'"
    assert ack.traceback is not None
    assert "failing_body" in ack.traceback
    assert "KeyError" in ack.traceback


@pytest.mark.parametrize("outcome", [Error("bad"), raised(ValueError("bad"))])
@pytest.mark.parametrize(("attempt", "max_attempts"), [(3, 3), (1, 1), (4, 3)])
def test_failure_on_the_last_attempt_discards(
    outcome: object, attempt: int, max_attempts: int
) -> None:
    ack = decide(7, attempt, max_attempts, outcome, now=NOW, backoff=60.0)
    assert ack.state is JobState.DISCARDED
    assert ack.scheduled_at is None
    assert ack.error is not None
    assert "bad" in ack.error


def test_failure_before_the_last_attempt_is_retryable() -> None:
    ack = decide(7, 2, 3, raised(ValueError("bad")), now=NOW, backoff=60.0)
    assert ack.state is JobState.RETRYABLE


def test_outcomes_are_frozen_values() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Snooze(1).seconds = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        Cancel("a").reason = "b"  # type: ignore[misc]
    assert Snooze(5) == Snooze(5.0)
    assert Error("x") == Error("x")
    assert Cancel("a") != Cancel("b")
