"""Cron entries: expressions, nicknames, timezones and slots, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from underway.errors import ConfigError
from underway.jobs import Cron, Job, Jobs
from underway.jobs.cron import SLOT_WINDOW, latest_slot


@pytest.fixture
def jobs(tmp_path: Any) -> Jobs:
    return Jobs(f"sqlite:///{tmp_path / 'cron.db'}")


def ts(
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    *,
    tz: str = "UTC",
) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=ZoneInfo(tz)).timestamp()


def test_latest_slot_is_at_or_before_now() -> None:
    assert latest_slot("*/5 * * * *", "UTC", ts(2026, 11, 29, 3, 10)) == ts(2026, 11, 29, 3, 10)
    assert latest_slot("*/5 * * * *", "UTC", ts(2026, 11, 29, 3, 14, 59)) == ts(2026, 11, 29, 3, 10)
    assert latest_slot("0 0 * * *", "UTC", ts(2026, 11, 29, 3, 7)) == ts(2026, 11, 29)


@pytest.mark.parametrize(
    ("nickname", "expected"),
    [
        ("@hourly", (2026, 11, 29, 3)),
        ("@daily", (2026, 11, 29)),
        ("@midnight", (2026, 11, 29)),
        ("@weekly", (2026, 11, 29)),  # a Sunday
        ("@monthly", (2026, 11, 1)),
        ("@yearly", (2026, 1, 1)),
        ("@annually", (2026, 1, 1)),
    ],
)
def test_nicknames(nickname: str, expected: tuple[int, ...]) -> None:
    assert latest_slot(nickname, "UTC", ts(2026, 11, 29, 3, 7)) == ts(*expected)


def test_fields_are_read_in_the_entry_timezone() -> None:
    now = ts(2026, 11, 29, 3, 7)  # 04:07 in Paris, 22:07 the day before in New York
    assert latest_slot("0 4 * * *", "Europe/Paris", now) == ts(2026, 11, 29, 4, tz="Europe/Paris")
    assert latest_slot("0 22 * * *", "America/New_York", now) == ts(
        2026, 11, 28, 22, tz="America/New_York"
    )


def test_due_only_within_the_slot_window(jobs: Jobs) -> None:
    @jobs.worker
    async def report(job: Job[Any]) -> None:
        return None

    entry = Cron("*/5 * * * *", report)
    slot = ts(2026, 11, 29, 3, 10)
    assert entry.due(slot) == slot
    assert entry.due(slot + SLOT_WINDOW - 1) == slot
    assert entry.due(slot + SLOT_WINDOW + 1) is None


def test_reboot_entries_have_no_clock_slot(jobs: Jobs) -> None:
    @jobs.worker
    async def warm(job: Job[Any]) -> None:
        return None

    entry = Cron("@reboot", warm)
    assert entry.is_reboot
    assert entry.due(ts(2026, 11, 29, 3, 10)) is None


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("61 * * * *", "invalid cron expression"),
        ("* * * *", "invalid cron expression"),
        ("@fortnightly", "invalid cron expression"),
        ("", "non-empty"),
    ],
)
def test_bad_expressions_are_rejected_at_definition(
    jobs: Jobs, expression: str, message: str
) -> None:
    @jobs.worker
    async def report(job: Job[Any]) -> None:
        return None

    with pytest.raises(ConfigError, match=message):
        jobs.add_cron(expression, report)
    assert jobs.crontab == []


def test_bad_timezone_args_and_options_are_rejected(jobs: Jobs) -> None:
    @jobs.worker
    async def report(job: Job[Any]) -> None:
        return None

    with pytest.raises(ConfigError, match="unknown timezone 'Mars/Olympus'"):
        jobs.add_cron("* * * * *", report, timezone="Mars/Olympus")
    with pytest.raises(ConfigError, match="JSON-serialisable"):
        jobs.add_cron("* * * * *", report, args={"when": datetime.now(UTC)})
    with pytest.raises(ConfigError, match="priority"):
        jobs.add_cron("* * * * *", report, priority=12)
    other = Jobs(jobs.database)

    @other.worker(name="elsewhere")
    async def foreign(job: Job[Any]) -> None:
        return None

    with pytest.raises(ConfigError, match="registered on this app"):
        jobs.add_cron("* * * * *", foreign)


def test_an_unknown_option_is_a_config_error_that_names_it(jobs: Jobs) -> None:
    @jobs.worker
    async def report(job: Job[Any]) -> None:
        return None

    with pytest.raises(ConfigError, match=r"unknown cron option 'bogus' \(options: args, ") as e:
        jobs.add_cron("* * * * *", report, bogus=1)
    assert "timezone" in str(e.value)
    with pytest.raises(ConfigError, match="unknown cron options 'bogus', 'queues'"):
        jobs.add_cron("* * * * *", report, queues="mail", bogus=1)
    assert jobs.crontab == []


def test_entries_are_keyed_by_worker_expression_timezone_and_args(jobs: Jobs) -> None:
    @jobs.worker
    async def report(job: Job[Any]) -> None:
        return None

    a = jobs.add_cron("0 * * * *", report, args={"kind": "a"})
    b = jobs.add_cron("0 * * * *", report, args={"kind": "b"})
    c = jobs.add_cron("0 * * * *", report, args={"kind": "a"}, timezone="Europe/Paris")
    assert len({a.key, b.key, c.key}) == 3
    with pytest.raises(ConfigError, match="already scheduled"):
        jobs.add_cron("0  *  * * *", report, args={"kind": "a"})
    named = jobs.add_cron("0 * * * *", report, args={"kind": "z"}, name="hourly-report")
    assert named.key == "hourly-report"


def test_spec_carries_overrides_and_slot_meta(jobs: Jobs) -> None:
    @jobs.worker(queue="reports", priority=3)
    async def report(job: Job[Any]) -> None:
        return None

    entry = jobs.add_cron(
        "@daily",
        report,
        args={"n": 1},
        queue="nightly",
        priority=1,
        tags=["cron"],
        meta={"team": "ops"},
        max_attempts=2,
    )
    spec = entry.spec(meta_extra={"cron_slot": 1.0})
    assert (spec.queue, spec.priority, spec.tags, spec.max_attempts) == (
        "nightly",
        1,
        ("cron",),
        2,
    )
    assert spec.args == {"n": 1}
    assert '"team":"ops"' in spec.meta_json
    assert '"cron_slot":1.0' in spec.meta_json


@pytest.mark.parametrize(
    ("args", "shown"),
    [([1, 2], "list [1, 2]"), ("x", "str 'x'"), (None, "NoneType None"), (5, "int 5")],
)
def test_args_that_are_not_a_dict_raise_config_error(jobs: Jobs, args: Any, shown: str) -> None:
    @jobs.worker(name="cron.report")
    async def report(job: Job[Any]) -> None:
        return None

    expected = f"cron entry for cron.report: args must be a dict (a JSON object), got {shown}"
    with pytest.raises(ConfigError) as caught:
        jobs.add_cron("@hourly", report, args=args)
    assert str(caught.value) == expected
    assert jobs.crontab == []
