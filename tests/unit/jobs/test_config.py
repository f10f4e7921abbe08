"""Jobs(...) options: validated at construction with precise messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from underway.errors import ConfigError
from underway.jobs import Jobs, JobState, Pruning


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'jobs.db'}"


def test_defaults(url: str) -> None:
    jobs = Jobs(url)
    c = jobs.config
    assert c.queues == {"default": 10}
    assert (c.poll_interval, c.stage_interval, c.heartbeat_interval) == (1.0, 1.0, 5.0)
    assert (c.rescue_after, c.shutdown_grace) == (60.0, 15.0)
    assert c.prune == Pruning()
    assert jobs.testing is None
    assert jobs.node is None


def test_constructing_does_not_touch_the_database(tmp_path: Path) -> None:
    Jobs(f"sqlite:///{tmp_path / 'lazy.db'}")
    assert list(tmp_path.iterdir()) == []


def test_node_names_default_to_unique_values(url: str) -> None:
    assert Jobs(url).config.name != Jobs(url).config.name
    assert Jobs(url, node_name="web-1").config.name == "web-1"


# -- queues -----------------------------------------------------------------------------


def test_queue_limits_are_kept(url: str) -> None:
    queues = {"default": 10, "imports": 2, "mail.eu": 20}
    assert Jobs(url, queues=queues).config.queues == queues


@pytest.mark.parametrize(
    ("queues", "message"),
    [
        ({"default": 0}, "limit of queue 'default'"),
        ({"default": -3}, "limit"),
        ({"default": 2.5}, "limit"),
        ({"default": "10"}, "limit"),
        ({"default": True}, "limit"),
        ({"bad name": 1}, "queue name"),
        ({"": 1}, "queue name"),
        ([("default", 1)], "mapping"),
        ("default", "mapping"),
    ],
)
def test_invalid_queues(url: str, queues: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Jobs(url, queues=queues)


# -- timings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "option", ["poll_interval", "stage_interval", "heartbeat_interval", "rescue_after"]
)
@pytest.mark.parametrize("bad", [0, -1, "1", None])
def test_intervals_must_be_positive_seconds(url: str, option: str, bad: Any) -> None:
    with pytest.raises(ConfigError, match=option):
        Jobs(url, **{option: bad})


def test_shutdown_grace_may_be_zero_but_not_negative(url: str) -> None:
    assert Jobs(url, shutdown_grace=0).config.shutdown_grace == 0
    with pytest.raises(ConfigError, match="shutdown_grace"):
        Jobs(url, shutdown_grace=-1)


@pytest.mark.parametrize(("heartbeat", "rescue"), [(5.0, 5.0), (5.0, 4.9), (30, 10), (5.0, 14.9)])
def test_rescue_after_must_be_three_heartbeat_intervals(
    url: str, heartbeat: float, rescue: float
) -> None:
    with pytest.raises(ConfigError, match="rescue_after") as info:
        Jobs(url, heartbeat_interval=heartbeat, rescue_after=rescue)
    assert "heartbeat_interval" in str(info.value)


def test_short_test_timings_are_accepted(url: str) -> None:
    jobs = Jobs(
        url, poll_interval=0.05, stage_interval=0.05, heartbeat_interval=0.1, rescue_after=0.5
    )
    assert jobs.config.rescue_after == 0.5


# -- pruning ----------------------------------------------------------------------------


def test_pruning_is_on_by_default_with_oban_like_ages() -> None:
    p = Pruning()
    assert p.max_age == {
        JobState.COMPLETED: 86_400.0,
        JobState.CANCELLED: 7 * 86_400.0,
        JobState.DISCARDED: 7 * 86_400.0,
    }
    assert p.limit >= 1
    assert p.interval > 0


def test_pruning_can_be_turned_off_or_tuned(url: str) -> None:
    assert Jobs(url, prune=None).config.prune is None
    tuned = Pruning(completed=60, cancelled=120, discarded=180, interval=5, limit=10)
    assert Jobs(url, prune=tuned).config.prune is tuned
    assert tuned.max_age[JobState.DISCARDED] == 180.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"completed": 0}, "Pruning.completed"),
        ({"cancelled": -1}, "Pruning.cancelled"),
        ({"discarded": "7d"}, "Pruning.discarded"),
        ({"interval": 0}, "Pruning.interval"),
        ({"limit": 0}, "Pruning.limit"),
        ({"limit": 2.5}, "Pruning.limit"),
    ],
)
def test_invalid_pruning(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Pruning(**options)


def test_pruning_options_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        Pruning(3600)  # type: ignore[call-arg]


# -- testing mode -----------------------------------------------------------------------


@pytest.mark.parametrize("mode", [None, "inline", "manual"])
def test_testing_modes(url: str, mode: Any) -> None:
    assert Jobs(url, testing=mode).testing == mode


@pytest.mark.parametrize("bad", ["auto", "INLINE", True, ""])
def test_unknown_testing_mode(url: str, bad: Any) -> None:
    with pytest.raises(ConfigError, match="testing"):
        Jobs(url, testing=bad)


def test_setting_an_unknown_mode_keeps_the_current_one(url: str) -> None:
    jobs = Jobs(url, testing="manual")
    with pytest.raises(ConfigError):
        jobs.testing = "sometimes"  # type: ignore[assignment]
    assert jobs.testing == "manual"


# -- database URL -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        "underway.db",
        "",
        42,
        None,
        "mysql://localhost/app",
        "sqlite://host/app.db",
        "sqlite:///",
    ],
)
def test_bad_database_url(bad: Any) -> None:
    with pytest.raises(ConfigError):
        Jobs(bad)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("timeout=5", "timeout"),
        ("busy_timeout=5&journal=delete", "journal"),
        ("busy_timeout=soon", "busy_timeout"),
        ("synchronous=sometimes", "synchronous"),
    ],
)
def test_bad_sqlite_url_options(tmp_path: Path, query: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Jobs(f"sqlite:///{tmp_path / 'jobs.db'}?{query}")


def test_known_sqlite_url_options(tmp_path: Path) -> None:
    jobs = Jobs(f"sqlite:///{tmp_path / 'jobs.db'}?busy_timeout=2.5&synchronous=full")
    assert jobs.engine.busy_timeout == 2.5  # type: ignore[attr-defined]
    assert jobs.engine.synchronous == "FULL"  # type: ignore[attr-defined]
