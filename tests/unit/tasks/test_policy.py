"""Pure supervision policy: restart decisions, restart intensity, strategy plans, checks."""

from __future__ import annotations

import pytest

from underway.errors import ConfigError
from underway.tasks._policy import (
    RestartIntensity,
    check_timeout,
    restart_plan,
    should_restart,
)


@pytest.mark.parametrize(
    ("restart", "normal", "expected"),
    [
        ("permanent", True, True),
        ("permanent", False, True),
        ("transient", True, False),
        ("transient", False, True),
        ("temporary", True, False),
        ("temporary", False, False),
    ],
)
def test_should_restart(restart: str, normal: bool, expected: bool) -> None:
    assert should_restart(restart, normal=normal) is expected  # type: ignore[arg-type]


def test_intensity_allows_max_restarts_within_the_window() -> None:
    intensity = RestartIntensity(3, 5.0)
    assert [intensity.add(t) for t in (0.0, 1.0, 2.0)] == [True, True, True]
    assert intensity.add(3.0) is False  # a 4th restart within 5 s


def test_intensity_forgets_restarts_older_than_the_window() -> None:
    intensity = RestartIntensity(3, 5.0)
    assert all(intensity.add(t) for t in (0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0))
    assert intensity.recent == 3
    assert intensity.add(12.5) is False


def test_a_restart_exactly_one_window_later_no_longer_counts() -> None:
    intensity = RestartIntensity(1, 5.0)
    assert intensity.add(0.0) is True
    assert intensity.add(5.0) is True
    assert intensity.add(9.9) is False


def test_zero_restarts_refuses_the_first() -> None:
    assert RestartIntensity(0, 5.0).add(0.0) is False


@pytest.mark.parametrize(
    ("strategy", "failed", "stop", "start"),
    [
        ("one_for_one", "b", [], ["b"]),
        ("one_for_all", "b", ["d", "c", "a"], ["a", "b", "c", "d"]),
        ("rest_for_one", "b", ["d", "c"], ["b", "c", "d"]),
        ("rest_for_one", "d", [], ["d"]),
        ("one_for_all", "a", ["d", "c", "b"], ["a", "b", "c", "d"]),
    ],
)
def test_restart_plan(strategy: str, failed: str, stop: list[str], start: list[str]) -> None:
    assert restart_plan(strategy, list("abcd"), failed) == (stop, start)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((True, 5.0), "max_restarts must be an int"),
        ((3, float("inf")), "max_seconds must be a number"),
        ((3, "5"), "max_seconds must be a number"),
    ],
)
def test_intensity_rejects_bad_values(args: tuple[object, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        RestartIntensity(*args)  # type: ignore[arg-type]


def test_check_timeout() -> None:
    assert check_timeout("x", "t", None) is None
    assert check_timeout("x", "t", 2) == 2.0
    with pytest.raises(ConfigError, match="x: t must be a number of seconds >= 0 or None"):
        check_timeout("x", "t", float("nan"))
