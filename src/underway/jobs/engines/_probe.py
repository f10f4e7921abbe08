"""What a health check reads from a database: its migrations and one node's heartbeat.

Each engine answers with a :class:`Probe` from its own ``_probe`` module, on a short
connection of its own that writes nothing: no migration is applied and no file created, so
a probe can look at a database that is not (yet) fit for a node. The statements live in
``<engine>/sql/probe/`` (none of them is a node's).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

from underway.jobs.engines._sql import uncommented

__all__ = ["Probe", "migration_name", "probe_query"]


@dataclass(frozen=True, slots=True)
class Probe:
    """What a database said when probed.

    Attributes:
        applied: The migrations recorded in the database (``0001_initial``...), in
            version order; empty when it has no underway tables.
        heartbeat_age: Seconds since the node asked about last heartbeated (never
            negative), ``None`` when it has no heartbeat row or no node was asked about.
    """

    applied: tuple[str, ...] = ()
    heartbeat_age: float | None = None


def migration_name(version: int, name: str) -> str:
    """How a migration is named in messages: ``0001_initial``."""
    return f"{version:04d}_{name}"


@functools.cache
def probe_query(dialect: str, name: str) -> str:
    """The text of ``<dialect>/sql/probe/<name>.sql`` without its comment lines."""
    folder = resources.files(f"underway.jobs.engines.{dialect}").joinpath("sql")
    return uncommented(folder.joinpath("probe").joinpath(f"{name}.sql").read_text())
