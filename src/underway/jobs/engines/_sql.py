"""Named SQL files and versioned migrations, read from the package."""

from __future__ import annotations

import functools
import re
import sqlite3
from importlib import resources
from importlib.abc import Traversable

__all__ = ["Migration", "fragment", "migrations", "query", "split_statements", "uncommented"]

_MIGRATION_RE = re.compile(r"^(\d{4})_(\w+)\.sql$")


def _package(dialect: str) -> str:
    """The engine package whose ``sql/`` and ``migrations/`` folders hold ``dialect``'s files."""
    return f"underway.jobs.engines.{dialect}"


@functools.cache
def query(dialect: str, name: str) -> str:
    """The text of ``<dialect>/sql/<name>.sql`` without its comment lines."""
    return uncommented(_sql_folder(dialect).joinpath(f"{name}.sql").read_text())


@functools.cache
def fragment(dialect: str, name: str) -> str:
    """The text of ``<dialect>/sql/fragments/<name>.sql``, comments kept: a part of
    statements (such as the conditions of a job filter, ``{job_filter}`` in them), not a
    statement of its own."""
    return _sql_folder(dialect).joinpath("fragments").joinpath(f"{name}.sql").read_text()


def uncommented(text: str) -> str:
    """``text`` without its comment lines."""
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))


def _sql_folder(dialect: str) -> Traversable:
    return resources.files(_package(dialect)).joinpath("sql")


class Migration:
    """One versioned schema change: ``<dialect>/migrations/NNNN_name.sql``."""

    def __init__(self, version: int, name: str, sql: str) -> None:
        self.version = version
        self.name = name
        self.sql = sql

    def __repr__(self) -> str:
        return f"<Migration {self.version:04d}_{self.name}>"


def migrations(dialect: str) -> list[Migration]:
    """Every migration of ``dialect`` in version order."""
    folder = resources.files(_package(dialect)).joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION_RE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text()))
    return sorted(found, key=lambda m: m.version)


def split_statements(script: str) -> list[str]:
    """Split a SQLite script into complete statements (triggers stay whole)."""
    statements: list[str] = []
    current: list[str] = []
    for line in script.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("--")):
            continue
        current.append(line)
        text = "\n".join(current)
        if sqlite3.complete_statement(text):
            statements.append(text.strip())
            current = []
    if current and "\n".join(current).strip():
        raise ValueError(f"incomplete SQL statement at the end of a script: {current[0]!r}")
    return statements
