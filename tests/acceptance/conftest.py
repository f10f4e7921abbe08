"""Fixtures shared by the command-line acceptance tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.cli_app import make_jobs
from tests.acceptance.test_cli import Node, close
from underway.jobs import Jobs


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'jobs.db'}"


@pytest.fixture
def client(url: str) -> Iterator[Jobs]:
    """The test's own handle on the database the CLI works on."""
    jobs = make_jobs(url)
    yield jobs
    close(jobs)


@pytest.fixture
def nodes() -> Iterator[list[Node]]:
    started: list[Node] = []
    yield started
    for node in started:
        node.kill()
