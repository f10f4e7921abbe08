"""Unique options: validation, the state mask, and when two jobs share a key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from underway.errors import ConfigError
from underway.jobs import Job, Jobs, JobState, Unique
from underway.jobs.unique import DEFAULT_STATES


def key(u: Unique, **overrides: Any) -> str:
    job: dict[str, Any] = {"worker": "app.sync", "queue": "default", "args": {}, "meta": {}}
    job.update(overrides)
    return u.key(**job)


# -- period -----------------------------------------------------------------------------


def test_default_period_is_sixty_seconds() -> None:
    assert Unique().period == 60.0


@pytest.mark.parametrize(("given", "stored"), [(300, 300.0), (0.5, 0.5), (86_400, 86_400.0)])
def test_period_in_seconds(given: float, stored: float) -> None:
    u = Unique(period=given)
    assert u.period == stored
    assert isinstance(u.period, float)


def test_period_forever_has_no_expiry() -> None:
    assert Unique(period="forever").period is None


@pytest.mark.parametrize("bad", [0, -5, True, "60", "always", None, float("nan")])
def test_invalid_period_is_rejected(bad: Any) -> None:
    with pytest.raises(ConfigError, match="period"):
        Unique(period=bad)


# -- fields and keys --------------------------------------------------------------------


def test_default_fields_are_worker_queue_args() -> None:
    assert Unique().fields == ("worker", "queue", "args")
    assert Unique().keys == ()


def test_fields_subset_keeps_order_and_drops_repeats() -> None:
    assert Unique(fields=["args", "worker", "args"]).fields == ("args", "worker")


@pytest.mark.parametrize("bad", [(), ["id"], ["worker", "tags"], ["ARGS"]])
def test_invalid_fields_are_rejected(bad: Any) -> None:
    with pytest.raises(ConfigError, match="fields"):
        Unique(fields=bad)


def test_keys_need_args_or_meta_among_the_fields() -> None:
    with pytest.raises(ConfigError, match="keys"):
        Unique(fields=["worker", "queue"], keys=["user_id"])


@pytest.mark.parametrize("bad", [[""], [1], ["ok", ""]])
def test_keys_must_be_non_empty_strings(bad: Any) -> None:
    with pytest.raises(ConfigError, match="keys"):
        Unique(keys=bad)


# -- states -----------------------------------------------------------------------------


def test_default_states_leave_out_cancelled_and_discarded() -> None:
    states = Unique().states
    assert states == frozenset(DEFAULT_STATES)
    assert JobState.CANCELLED not in states
    assert JobState.DISCARDED not in states
    assert {JobState.AVAILABLE, JobState.EXECUTING, JobState.COMPLETED} <= states


def test_states_accept_names_and_enum_members() -> None:
    u = Unique(states=["available", JobState.SCHEDULED])
    assert u.states == frozenset({JobState.AVAILABLE, JobState.SCHEDULED})


@pytest.mark.parametrize("bad", [["finished"], ["available", "nope"], []])
def test_invalid_or_empty_states_are_rejected(bad: Any) -> None:
    with pytest.raises(ConfigError, match="states"):
        Unique(states=bad)


def test_state_bits_are_distinct_powers_of_two() -> None:
    bits = [s.bit for s in JobState]
    assert len(set(bits)) == len(bits)
    assert all(b > 0 and b & (b - 1) == 0 for b in bits)


def test_state_mask_is_the_union_of_the_states_bits() -> None:
    u = Unique(states=["available", "executing"])
    assert u.state_mask == JobState.AVAILABLE.bit | JobState.EXECUTING.bit
    everything = Unique(states=list(JobState))
    assert everything.state_mask == sum(s.bit for s in JobState)
    for state in JobState:
        assert bool(Unique().state_mask & state.bit) == (state in DEFAULT_STATES)


# -- keys: equal exactly when the jobs are duplicates ---------------------------------


def test_same_worker_queue_and_args_share_a_key() -> None:
    u = Unique()
    assert key(u, args={"a": 1, "b": [1, 2]}) == key(u, args={"b": [1, 2], "a": 1})


def test_nested_args_compare_regardless_of_key_order() -> None:
    u = Unique()
    assert key(u, args={"x": {"p": 1, "q": 2}}) == key(u, args={"x": {"q": 2, "p": 1}})


@pytest.mark.parametrize(
    "change",
    [
        {"args": {"a": 2}},
        {"args": {"a": 1, "b": 2}},
        {"args": {"a": "1"}},
        {"worker": "app.other"},
        {"queue": "mail"},
    ],
)
def test_any_compared_difference_changes_the_key(change: dict[str, Any]) -> None:
    u = Unique()
    assert key(u, args={"a": 1}) != key(u, **{"args": {"a": 1}, **change})


def test_meta_is_ignored_unless_it_is_a_field() -> None:
    assert key(Unique(), meta={"t": 1}) == key(Unique(), meta={"t": 2})
    with_meta = Unique(fields=["worker", "args", "meta"])
    assert key(with_meta, meta={"t": 1}) != key(with_meta, meta={"t": 2})


def test_fields_left_out_are_ignored() -> None:
    u = Unique(fields=["worker", "args"])
    assert key(u, queue="a") == key(u, queue="b")
    only_args = Unique(fields=["args"])
    assert key(only_args, worker="x", queue="a") == key(only_args, worker="y", queue="b")
    assert key(only_args, args={"n": 1}) != key(only_args, args={"n": 2})


def test_keys_compare_only_those_args() -> None:
    u = Unique(keys=["user_id"])
    base = key(u, args={"user_id": 7, "attempted": "monday"})
    assert base == key(u, args={"user_id": 7, "attempted": "tuesday"})
    assert base == key(u, args={"user_id": 7})
    assert base != key(u, args={"user_id": 8, "attempted": "monday"})


def test_keys_apply_to_meta_too() -> None:
    u = Unique(fields=["worker", "meta"], keys=["tenant"])
    base = key(u, args={"a": 1}, meta={"tenant": "acme", "trace": "x"})
    assert base == key(u, args={"a": 2}, meta={"tenant": "acme", "trace": "y"})
    assert base != key(u, args={"a": 1}, meta={"tenant": "globex", "trace": "x"})


def test_keys_cover_args_and_meta_together() -> None:
    u = Unique(fields=["args", "meta"], keys=["id"])
    base = key(u, args={"id": 1, "x": 1}, meta={"id": "m", "y": 1})
    assert base == key(u, args={"id": 1, "x": 2}, meta={"id": "m", "y": 2})
    assert base != key(u, args={"id": 1}, meta={"id": "other"})
    assert base != key(u, args={"id": 2}, meta={"id": "m"})


def test_field_values_cannot_run_into_each_other() -> None:
    u = Unique(fields=["worker", "queue"])
    assert key(u, worker="a.b", queue="c") != key(u, worker="a", queue="b.c")
    v = Unique(fields=["worker", "args"])
    assert key(v, worker="w", args={"k": "v"}) != key(v, worker='w","args', args={"k": "v"})


def test_key_is_a_stable_hex_digest() -> None:
    k = key(Unique(), args={"a": 1})
    assert k == key(Unique(), args={"a": 1})
    assert len(k) == 64
    int(k, 16)


def test_period_and_states_do_not_change_the_key() -> None:
    a = Unique(period=10, states=["available"])
    b = Unique(period="forever")
    assert key(a, args={"a": 1}) == key(b, args={"a": 1})


# -- on a worker --------------------------------------------------------------------------


def test_worker_spec_carries_the_unique_key_mask_and_period(tmp_path: Path) -> None:
    jobs = Jobs(f"sqlite:///{tmp_path / 'jobs.db'}")
    u = Unique(period=300, keys=["file_id"], states=["available", "scheduled"])

    @jobs.worker(queue="imports", unique=u)
    async def import_file(job: Job[Any]) -> None:
        return None

    a = import_file.new({"file_id": 1, "note": "x"})
    b = import_file.new({"file_id": 1, "note": "y"})
    c = import_file.new({"file_id": 2})
    assert a.unique_key is not None
    assert a.unique_key == b.unique_key != c.unique_key
    assert a.unique_key == u.key(
        worker=import_file.name, queue="imports", args={"file_id": 1}, meta={}
    )
    assert a.unique_states == u.state_mask
    assert a.unique_period == 300.0
    elsewhere = import_file.new({"file_id": 1}, queue="other")
    assert elsewhere.unique_key != a.unique_key


def test_unique_can_be_switched_off_per_job(tmp_path: Path) -> None:
    jobs = Jobs(f"sqlite:///{tmp_path / 'jobs.db'}")

    @jobs.worker(unique=Unique(period="forever"))
    async def once(job: Job[Any]) -> None:
        return None

    spec = once.new({}, unique=None)
    assert spec.unique_key is None
    assert spec.unique_states == 0
    plain = Jobs(f"sqlite:///{tmp_path / 'other.db'}")

    @plain.worker
    async def free(job: Job[Any]) -> None:
        return None

    assert free.new({}).unique_key is None
    assert free.new({}, unique=Unique()).unique_key is not None
