"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    """A thread pool for sync job bodies, shut down (its threads joined) after the test."""
    threads = ThreadPoolExecutor(16, thread_name_prefix="test-threads")
    yield threads
    threads.shutdown(wait=True)
