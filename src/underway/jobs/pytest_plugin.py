"""pytest fixtures for applications that use underway.jobs (registered automatically).

``underway_testing`` switches a ``Jobs`` app into a testing mode on a fresh temporary
database for one test::

    def test_signup_enqueues_welcome(underway_testing):
        jobs = underway_testing(app.jobs)            # "manual" by default
        signup("ada@example.com")
        assert_enqueued(jobs, worker=send_welcome, args={"email": "ada@example.com"})
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING

import pytest

from underway.jobs.testing import use_testing

if TYPE_CHECKING:
    from underway.jobs.app import Jobs, TestingMode


@pytest.fixture
def underway_testing() -> Iterator[Callable[..., Jobs]]:
    """A function ``(jobs, mode="manual", database=None) -> jobs`` undone after the test."""
    with ExitStack() as stack:

        def use(jobs: Jobs, mode: TestingMode = "manual", *, database: str | None = None) -> Jobs:
            return stack.enter_context(use_testing(jobs, mode, database=database))

        yield use
