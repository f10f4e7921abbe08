"""Where the Redis tests find the server, and the fixtures they share.

A test module imports the fixtures (``admin_fixture``, ``stream_fixture``) to use them as
``admin`` and ``stream``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from tests.conftest import SERVICES

__all__ = ["HOST", "PORT", "URL", "admin_fixture", "stream_fixture"]

HOST, PORT = SERVICES["redis"].address
URL = f"redis://{HOST}:{PORT}/0"


@pytest.fixture(name="admin")
async def admin_fixture() -> AsyncIterator[Redis]:
    """The test's own connection, to write entries and inspect the group."""
    client = Redis.from_url(URL)
    yield client
    await client.aclose()


@pytest.fixture(name="stream")
async def stream_fixture(admin: Redis) -> AsyncIterator[str]:
    """A stream name of this test alone; it and its dead-letter stream are deleted after."""
    name = f"uw-test-{uuid.uuid4().hex[:12]}"
    yield name
    await admin.delete(name, f"{name}:dead")
