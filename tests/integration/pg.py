"""PostgreSQL for integration tests: the server's address and a fresh schema per test.

The server is ``$UNDERWAY_POSTGRES_URL`` (a full URL) or ``postgresql://postgres@<addr>``
with ``<addr>`` from ``$UNDERWAY_POSTGRES_ADDR`` (default ``127.0.0.1:5432``), the same
address ``tests/conftest.py`` checks for the ``postgres`` marker. Tests share one database,
``underway_test``, created on first use; each test gets schemas of its own (an engine creates
its schema on open), dropped at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from urllib.parse import urlsplit, urlunsplit

import psycopg

__all__ = ["TEST_DATABASE", "Schemas", "admin_url", "database_url", "schemas"]

TEST_DATABASE = "underway_test"
_created: set[str] = set()


def admin_url() -> str:
    """The URL of the server's maintenance database (``postgres`` unless the URL names one)."""
    url = os.environ.get("UNDERWAY_POSTGRES_URL")
    if url:
        return url
    addr = os.environ.get("UNDERWAY_POSTGRES_ADDR", "127.0.0.1:5432")
    return f"postgresql://postgres@{addr}/postgres"


def database_url(name: str = TEST_DATABASE) -> str:
    """The URL of database ``name`` on the test server, created if missing."""
    parts = urlsplit(admin_url())
    url = urlunsplit(parts._replace(path=f"/{name}"))
    if name not in _created:
        with psycopg.connect(admin_url(), autocommit=True) as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if found.fetchone() is None:
                with suppress(psycopg.errors.DuplicateDatabase):  # made meanwhile elsewhere
                    conn.execute(f'CREATE DATABASE "{name}"')
        _created.add(name)
    return url


class Schemas:
    """Hands out fresh schema names in the test database and drops them afterwards."""

    def __init__(self) -> None:
        self.base = database_url()
        self.made: list[str] = []

    def name(self) -> str:
        """A schema name no other test uses (the engine creates the schema)."""
        schema = f"t_{uuid.uuid4().hex[:12]}"
        self.made.append(schema)
        return schema

    def url(self, schema: str | None = None, **options: object) -> str:
        """The engine URL of ``schema`` (a fresh one by default), with extra URL options."""
        schema = schema or self.name()
        query = "&".join([f"schema={schema}", *(f"{k}={v}" for k, v in options.items())])
        return f"{self.base}?{query}"

    def connect(self, *, autocommit: bool = True) -> psycopg.Connection[tuple[object, ...]]:
        """A plain psycopg connection to the test database (the caller closes it)."""
        return psycopg.connect(self.base, autocommit=autocommit)

    def drop_all(self) -> None:
        """Drop every schema handed out (and what is in it)."""
        if not self.made:
            return
        with self.connect() as conn:
            for schema in self.made:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        self.made.clear()


@contextmanager
def schemas() -> Iterator[Schemas]:
    """:class:`Schemas` for one test, dropped when it ends."""
    made = Schemas()
    try:
        yield made
    finally:
        made.drop_all()
