"""``underway jobs retry|cancel|delete`` with filters, on both engines: the confirmation,
``--yes``, the warning of an empty filter, and the count printed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner, Result

from underway.cli import main
from underway.jobs import Jobs

from ..conftest import Database
from .test_bulk_actions import T0, populate, states

NO_ENV: dict[str, str | None] = {"UNDERWAY_APP": None, "UNDERWAY_DATABASE": None}


@pytest.fixture
def ids(database: Database) -> Iterator[dict[str, int]]:
    """The jobs of ``test_bulk_actions.JOBS`` in the test's database."""
    jobs = Jobs(database.url, prune=None)
    try:
        yield populate(database, jobs)
    finally:
        asyncio.run(jobs.engine.close())
        close_sync = getattr(jobs.engine, "close_sync", None)
        if close_sync is not None:
            close_sync()


def underway(database: Database, *args: str, answer: str | None = None) -> Result:
    runner = CliRunner(env=NO_ENV)
    return runner.invoke(main, [*args, "--database", database.url], input=answer)


def test_yes_acts_without_asking_and_prints_the_count(
    database: Database, ids: dict[str, int]
) -> None:
    result = underway(database, "jobs", "retry", "--state", "discarded", "--queue", "mail", "-y")

    assert result.exit_code == 0, result.output
    assert result.stdout == "1 job retried\n"
    assert states(database)[ids["b"]] == "available"


def test_without_yes_it_asks_first_and_a_no_changes_nothing(
    database: Database, ids: dict[str, int]
) -> None:
    before = states(database)

    refused = underway(database, "jobs", "cancel", "--queue", "mail", answer="n\n")

    assert refused.exit_code == 1
    assert "Cancel every scheduled, available, executing, retryable job matching queue mail?" in (
        refused.output
    )
    assert "Aborted" in refused.output
    assert states(database) == before

    nobody = underway(database, "jobs", "cancel", "--queue", "mail")  # no terminal to answer
    assert nobody.exit_code == 1
    assert states(database) == before

    agreed = underway(database, "jobs", "cancel", "--queue", "mail", answer="y\n")
    assert agreed.exit_code == 0, agreed.output
    assert agreed.stdout.endswith("1 job cancelled\n")
    assert states(database)[ids["g"]] == "cancelled"


def test_an_empty_filter_warns_that_it_means_every_job(
    database: Database, ids: dict[str, int]
) -> None:
    refused = underway(database, "jobs", "delete", answer="n\n")

    assert refused.exit_code == 1
    assert "Warning: no filter given" in refused.stderr
    assert "delete EVERY job that is completed, discarded, cancelled" in refused.stderr
    assert len(states(database)) == len(ids)

    agreed = underway(database, "jobs", "delete", answer="y\n")
    assert agreed.exit_code == 0, agreed.output
    assert agreed.stdout.endswith("3 jobs deleted\n")
    assert sorted(states(database).values()) == ["available", "executing", "retryable", "scheduled"]


def test_every_filter_option_reaches_the_action(database: Database, ids: dict[str, int]) -> None:
    tagged = underway(database, "jobs", "delete", "--tag", "x", "--tag", "y", "--yes")
    assert tagged.stdout == "1 job deleted\n"
    assert ids["a"] not in states(database)

    by_node = underway(database, "jobs", "cancel", "--node", "node-2", "--yes")
    assert by_node.stdout == "1 job cancelled\n"
    assert states(database)[ids["g"]] == "cancelled"

    by_worker = underway(
        database,
        "jobs",
        "retry",
        "--worker",
        "w.a",
        "--worker",
        "w.c",
        "--state",
        "cancelled",
        "-y",
    )
    assert by_worker.stdout == "2 jobs retried\n"  # c and g
    assert states(database)[ids["c"]] == states(database)[ids["g"]] == "available"

    none = underway(database, "jobs", "delete", "--queue", "nothing-here", "--yes")
    assert none.stdout == "0 jobs deleted\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("retry", "7", "--state", "discarded"), "give a job id or filters"),
        (("cancel", "7", "--queue", "mail", "--yes"), "give a job id or filters"),
        (("delete", "--state", "executing", "--yes"), "'executing' is not one of"),
        (("retry", "--state", "available", "--yes"), "'available' is not one of"),
        (("cancel", "--queue", "bad name!", "--yes"), "queue name must be"),
    ],
)
def test_bad_options_are_usage_errors_that_change_nothing(
    database: Database, ids: dict[str, int], args: tuple[str, ...], message: str
) -> None:
    before = states(database)

    result = underway(database, "jobs", *args)

    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert states(database) == before


def test_a_job_id_still_acts_on_that_job_alone(database: Database, ids: dict[str, int]) -> None:
    result = underway(database, "jobs", "retry", str(ids["b"]))

    assert result.exit_code == 0, result.output
    assert "available again" in result.stdout
    assert states(database)[ids["b"]] == "available"
    assert states(database)[ids["c"]] == "cancelled"


def test_a_bad_filter_is_reported_before_asking(database: Database, ids: dict[str, int]) -> None:
    before = states(database)

    result = underway(database, "jobs", "retry", "--queue", "not a queue!", answer="y\n")

    assert result.exit_code != 0
    assert "?" not in result.output  # never asked
    assert "queue" in result.output + result.stderr
    assert "Traceback" not in result.output
    assert states(database) == before


# -- time ranges ------------------------------------------------------------------------------


def at(offset: float) -> str:
    """T0 + ``offset`` as an ISO 8601 datetime with its offset (UTC)."""
    return datetime.fromtimestamp(T0 + offset, UTC).isoformat()


def listed_ids(result: Result) -> set[int]:
    assert result.exit_code == 0, result.output
    if result.stdout == "no jobs match\n":
        return set()
    return {int(line.split()[0]) for line in result.stdout.splitlines()[1:]}


def test_time_ranges_select_the_jobs_listed(database: Database, ids: dict[str, int]) -> None:
    def listing(*args: str) -> set[int]:
        return listed_ids(underway(database, "jobs", "list", *args))

    def named(names: str) -> set[int]:
        return {ids[n] for n in names}

    assert listing("--inserted-after", at(50)) == named("cdefg")
    assert listing("--inserted-before", at(50)) == named("ab")
    assert listing("--inserted-after", at(30), "--inserted-before", at(70)) == named("bc")
    assert listing("--finished-after", at(40)) == named("bc")
    assert listing("--finished-before", at(40)) == named("a")
    assert listing("--finished-after", at(40), "--queue", "mail", "--state", "cancelled") == (
        named("c")
    )
    # Without an offset the time is local: the same instant as the UTC one.
    local = datetime.fromtimestamp(T0 + 50).isoformat()
    assert listing("--inserted-after", local) == named("cdefg")
    # A date alone is midnight (local time).
    assert listing("--inserted-before", "2100-01-01") == set(ids.values())
    assert listing("--inserted-after", "2100-01-01") == set()


def test_time_ranges_reach_each_bulk_action(database: Database, ids: dict[str, int]) -> None:
    deleted = underway(database, "jobs", "delete", "--finished-before", at(40), "--yes")
    assert deleted.exit_code == 0, deleted.output
    assert deleted.stdout == "1 job deleted\n"
    assert ids["a"] not in states(database)

    retried = underway(
        database,
        "jobs",
        "retry",
        "--inserted-after",
        at(30),
        "--inserted-before",
        at(70),
        "--state",
        "cancelled",
        "-y",
    )
    assert retried.stdout == "1 job retried\n"
    assert states(database)[ids["c"]] == "available"

    cancelled = underway(database, "jobs", "cancel", "--inserted-after", at(75), "--yes")
    assert cancelled.stdout == "3 jobs cancelled\n"  # e, f and g
    assert {states(database)[ids[n]] for n in "efg"} == {"cancelled"}
    assert states(database)[ids["d"]] == "retryable"  # inserted at T0 + 70


def test_the_confirmation_names_the_time_range(database: Database, ids: dict[str, int]) -> None:
    before = states(database)

    refused = underway(
        database, "jobs", "delete", "--finished-after", at(40), "--queue", "mail", answer="n\n"
    )

    assert refused.exit_code == 1
    when = datetime.fromtimestamp(T0 + 40, UTC).isoformat(sep=" ")
    assert (
        f"Delete every completed, discarded, cancelled job matching queue mail; "
        f"finished after {when}?" in refused.output
    )
    assert states(database) == before


@pytest.mark.parametrize("command", ["list", "retry", "cancel", "delete"])
@pytest.mark.parametrize(
    "option", ["--inserted-after", "--inserted-before", "--finished-after", "--finished-before"]
)
def test_a_bad_date_is_a_usage_error_naming_the_option(
    database: Database, ids: dict[str, int], command: str, option: str
) -> None:
    before = states(database)

    yes = [] if command == "list" else ["--yes"]

    result = underway(database, "jobs", command, option, "last tuesday", *yes)

    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.stderr
    assert "'last tuesday' is not an ISO 8601 date or datetime" in result.stderr
    assert "Traceback" not in result.output
    assert states(database) == before


@pytest.mark.parametrize("command", ["list", "retry", "cancel", "delete"])
def test_a_local_date_out_of_range_is_a_usage_error(
    database: Database, ids: dict[str, int], command: str
) -> None:
    before = states(database)
    yes = [] if command == "list" else ["--yes"]

    # Midnight of 1 January of year 1, local time, is before the first instant a datetime
    # holds in UTC (or any zone).
    result = underway(database, "jobs", command, "--inserted-after", "0001-01-01", *yes)

    assert result.exit_code == 2, result.output
    assert "Invalid value for '--inserted-after'" in result.stderr
    assert "'0001-01-01' is out of range in local time" in result.stderr
    assert "Traceback" not in result.output
    assert states(database) == before


@pytest.mark.parametrize("command", ["list", "retry", "cancel", "delete"])
def test_an_empty_range_is_a_usage_error(
    database: Database, ids: dict[str, int], command: str
) -> None:
    before = states(database)
    args = ["--inserted-after", at(70), "--inserted-before", at(30)]
    if command != "list":
        args.append("--yes")

    result = underway(database, "jobs", command, *args)

    assert result.exit_code == 2, result.output
    assert "inserted_after must be earlier than inserted_before" in result.stderr
    assert states(database) == before


def test_a_job_id_with_a_time_range_is_refused(database: Database, ids: dict[str, int]) -> None:
    result = underway(database, "jobs", "retry", str(ids["b"]), "--inserted-after", at(0))

    assert result.exit_code == 2
    assert "give a job id or filters, not both" in result.stderr
    assert states(database)[ids["b"]] == "discarded"
