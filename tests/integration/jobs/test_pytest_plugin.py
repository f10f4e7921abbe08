"""The pytest plugin: ``underway_testing`` in a user's test suite, run by pytest itself.

The user's application is configured with the engine of the run (its database must never be
written); one of the user's tests chooses a database of that engine for itself.
"""

from __future__ import annotations

import pytest

from tests._pytester import run_pytest

from ..conftest import Database

pytest_plugins = ["pytester"]

APP = """
from underway.jobs import Jobs

jobs = Jobs({url!r}, queues={{"default": 1}})
CHOSEN_URL = {chosen!r}
ORIGINAL_ENGINE = jobs.engine
ORIGINAL_URL = jobs.database


@jobs.worker(record_result=True)
def greet(job):
    return "hello " + job.args["name"]
"""

TESTS = """
import pytest

from underway.jobs.testing import assert_enqueued, drain_queue_sync, refute_enqueued

import myapp


def test_manual_by_default(underway_testing):
    jobs = underway_testing(myapp.jobs)
    assert jobs is myapp.jobs
    assert jobs.testing == "manual"
    assert jobs.engine is not myapp.ORIGINAL_ENGINE
    myapp.greet.enqueue_sync({"name": "ada"})
    assert_enqueued(jobs, worker=myapp.greet, args={"name": "ada"})
    assert drain_queue_sync(jobs).completed == 1
    refute_enqueued(jobs)
    myapp.greet.enqueue_sync({"name": "left behind"})


def test_each_test_gets_a_fresh_database(underway_testing):
    jobs = underway_testing(myapp.jobs)
    refute_enqueued(jobs)
    assert jobs.list_jobs_sync() == []


async def test_inline_in_an_async_test(underway_testing):
    underway_testing(myapp.jobs, "inline")
    job = await myapp.greet.enqueue({"name": "bo"})
    assert job.result == "hello bo"


def test_failing_test_still_restores(underway_testing):
    underway_testing(myapp.jobs, "inline")
    raise AssertionError("deliberate failure")


def test_a_database_of_ones_choice(underway_testing):
    jobs = underway_testing(myapp.jobs, database=myapp.CHOSEN_URL)
    assert jobs.database == myapp.CHOSEN_URL
    myapp.greet.enqueue_sync({"name": "cy"})
    assert drain_queue_sync(jobs).completed == 1
    myapp.greet.enqueue_sync({"name": "di"})
    assert drain_queue_sync(jobs).completed == 1


def test_app_is_restored_after_each_test():
    assert myapp.jobs.testing is None
    assert myapp.jobs.engine is myapp.ORIGINAL_ENGINE
    assert myapp.jobs.database == myapp.ORIGINAL_URL
"""

# A hang in the user's suite ends that test with the stacks of every thread, well within
# the bound of the whole run (see tests/_pytester.py).
INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
filterwarnings = error
timeout = 30
timeout_method = thread
"""


@pytest.fixture
def chosen(database: Database) -> Database:
    """The database one of the user's tests asks for."""
    return database.other("chosen")


@pytest.fixture
def project(pytester: pytest.Pytester, database: Database, chosen: Database) -> None:
    pytester.makepyfile(myapp=APP.format(url=database.url, chosen=chosen.url))
    pytester.makepyfile(test_user_suite=TESTS)
    pytester.makeini(INI)
    pytester.syspathinsert()


@pytest.mark.usefixtures("project")
def test_fixture_in_a_users_suite(
    pytester: pytest.Pytester, database: Database, chosen: Database
) -> None:
    result = run_pytest(pytester, "-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=5, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_manual_by_default PASSED*",
            "*test_each_test_gets_a_fresh_database PASSED*",
            "*test_inline_in_an_async_test PASSED*",
            "*test_failing_test_still_restores FAILED*",
            "*test_a_database_of_ones_choice PASSED*",
            "*test_app_is_restored_after_each_test PASSED*",
        ]
    )
    assert "deliberate failure" in result.stdout.str()
    assert not database.exists(), "the application's own database was never written"
    states = chosen.sql("SELECT state FROM underway_jobs ORDER BY id")
    assert states == [("completed",), ("completed",)]


def test_fixture_is_registered_by_the_plugin(pytester: pytest.Pytester) -> None:
    result = run_pytest(pytester, "-p", "no:cacheprovider", "--fixtures")
    result.stdout.fnmatch_lines(["underway_testing*", "*(jobs, mode=*manual*"])
