"""The pytest plugin: ``underway_testing`` in a user's test suite, run by pytest itself."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

APP = """
from underway.jobs import Jobs

jobs = Jobs({url!r}, queues={{"default": 1}})
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


def test_app_is_restored_after_each_test():
    assert myapp.jobs.testing is None
    assert myapp.jobs.engine is myapp.ORIGINAL_ENGINE
    assert myapp.jobs.database == myapp.ORIGINAL_URL
"""

INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> Path:
    prod = pytester.path / "prod.db"
    pytester.makepyfile(myapp=APP.format(url=f"sqlite:///{prod}"))
    pytester.makepyfile(test_user_suite=TESTS)
    pytester.makeini(INI)
    pytester.syspathinsert()
    return prod


def test_fixture_in_a_users_suite(pytester: pytest.Pytester, project: Path) -> None:
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_manual_by_default PASSED*",
            "*test_each_test_gets_a_fresh_database PASSED*",
            "*test_inline_in_an_async_test PASSED*",
            "*test_failing_test_still_restores FAILED*",
            "*test_app_is_restored_after_each_test PASSED*",
        ]
    )
    assert "deliberate failure" in result.stdout.str()
    assert not project.exists(), "the application's own database was never written"


def test_fixture_is_registered_by_the_plugin(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--fixtures")
    result.stdout.fnmatch_lines(["underway_testing*", "*(jobs, mode=*manual*"])
