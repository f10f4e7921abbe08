"""Health checks: is the database reachable, is its schema this version's, is a node alive.

:func:`check_health` asks the engine's probe (``engines/<engine>/_probe.py``) on a short
connection of its own, bounded by a timeout, and turns the answer, or the failure to get
one, into a frozen :class:`Health`. It never raises for a database that cannot be reached
or read: that is what it reports. It applies no migration and creates no file.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from underway.errors import ConfigError, DatabaseError
from underway.jobs.engines._probe import Probe, migration_name
from underway.jobs.engines._sql import migrations
from underway.jobs.engines.base import Engine

__all__ = ["Health", "HealthCheck", "check_args", "check_health"]

_UNREACHABLE = "unknown: the database cannot be reached"
Prober = Callable[..., Awaitable[Probe]]


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """One check of a :class:`Health` report.

    Attributes:
        name: ``"database"``, ``"migrations"`` or ``"node"``.
        ok: Whether it passed.
        detail: What was found, or why it failed, in one line.
    """

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Health:
    """What a health check found (see :meth:`underway.jobs.Jobs.health`).

    Attributes:
        database: The database, as messages name it (a URL without its password, or the
            SQLite file's path).
        reachable: Whether the database answered.
        error: Why it did not (``None`` when it did).
        applied: The migrations recorded in the database (``0001_initial``...).
        known: The migrations this version of underway has.
        node: The node asked about, if any.
        heartbeat_age: Seconds since that node last heartbeated; ``None`` when it has no
            heartbeat (never started, stopped cleanly, or forgotten as dead) or no node was
            asked about.
        window: Seconds of silence after which the lifeline judges a node dead and rescues
            its jobs (the app's ``rescue_after``).
    """

    database: str
    reachable: bool
    error: str | None = None
    applied: tuple[str, ...] = ()
    known: tuple[str, ...] = ()
    node: str | None = None
    heartbeat_age: float | None = None
    window: float = 60.0

    @property
    def pending(self) -> tuple[str, ...]:
        """Migrations this version has that the database lacks (none when unreachable)."""
        if not self.reachable:
            return ()
        done = {_version(name) for name in self.applied}
        return tuple(name for name in self.known if _version(name) not in done)

    @property
    def newer(self) -> tuple[str, ...]:
        """Migrations the database has that this version does not know: it was migrated by
        a newer version of underway."""
        mine = {_version(name) for name in self.known}
        return tuple(name for name in self.applied if _version(name) not in mine)

    @property
    def migrations_current(self) -> bool:
        """Whether the database's schema is exactly this version's."""
        return self.reachable and not self.pending and not self.newer

    @property
    def node_alive(self) -> bool | None:
        """Whether :attr:`node` heartbeated within :attr:`window` (``None``: no node asked)."""
        if self.node is None:
            return None
        return self.heartbeat_age is not None and self.heartbeat_age <= self.window

    @property
    def checks(self) -> tuple[HealthCheck, ...]:
        """The database check, the migrations check and, when a node was asked about, the
        node check, each with its detail."""
        found = [self._database_check(), self._migrations_check()]
        if self.node is not None:
            found.append(self._node_check(self.node))
        return tuple(found)

    @property
    def ok(self) -> bool:
        """Whether every check passed."""
        return all(check.ok for check in self.checks)

    @property
    def problems(self) -> tuple[str, ...]:
        """``"<check>: <reason>"`` for each failed check (empty when healthy)."""
        return tuple(f"{c.name}: {c.detail}" for c in self.checks if not c.ok)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values (what ``underway health --json`` prints)."""
        node = None
        if self.node is not None:
            node = {
                "name": self.node,
                "alive": self.node_alive,
                "heartbeat_age": self.heartbeat_age,
                "window": self.window,
            }
        return {
            "ok": self.ok,
            "database": {"name": self.database, "reachable": self.reachable, "error": self.error},
            "migrations": {
                "current": self.migrations_current,
                "applied": list(self.applied),
                "known": list(self.known),
                "pending": list(self.pending),
                "newer": list(self.newer),
            },
            "node": node,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
        }

    def _database_check(self) -> HealthCheck:
        if not self.reachable:
            return HealthCheck("database", False, self.error or "no answer")
        return HealthCheck("database", True, f"{self.database} answered")

    def _migrations_check(self) -> HealthCheck:
        if not self.reachable:
            return HealthCheck("migrations", False, _UNREACHABLE)
        reasons = []
        if self.pending:
            reasons.append(f"pending: {', '.join(self.pending)} (run underway migrate)")
        if self.newer:
            reasons.append(
                f"the database has migrations this version does not know: "
                f"{', '.join(self.newer)} (a newer underway migrated it; upgrade this code)"
            )
        if reasons:
            return HealthCheck("migrations", False, "; ".join(reasons))
        return HealthCheck("migrations", True, f"current ({len(self.applied)} applied)")

    def _node_check(self, node: str) -> HealthCheck:
        if not self.reachable:
            return HealthCheck("node", False, _UNREACHABLE)
        age = self.heartbeat_age
        if age is None:
            return HealthCheck(
                "node",
                False,
                f"node {node!r} has no heartbeat (not started, stopped, or forgotten as dead)",
            )
        said = f"node {node!r} last heartbeated {age:.1f}s ago"
        if age > self.window:
            return HealthCheck(
                "node",
                False,
                f"{said}, longer than the {self.window:g}s after which its jobs are rescued",
            )
        return HealthCheck("node", True, f"{said} (dead after {self.window:g}s)")


def _version(name: str) -> int:
    return int(name.partition("_")[0])


def check_args(node: object, timeout: object) -> None:
    """Check the arguments of a health check.

    Raises:
        ConfigError: ``node`` is not a non-empty string or ``None``, or ``timeout`` is not
            a number of seconds above zero.
    """
    if node is not None and (not isinstance(node, str) or not node):
        raise ConfigError(f"node must be a node's name or None, got {node!r}")
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise ConfigError(f"timeout must be seconds > 0, got {timeout!r}")


async def check_health(
    engine: Engine, *, node: str | None, window: float, timeout: float
) -> Health:
    """Probe ``engine``'s database within ``timeout`` seconds and report (see
    :class:`Health`).

    Raises:
        ConfigError: A bad argument (see :func:`check_args`), or an engine of a kind that
            has no health check.
    """
    check_args(node, timeout)
    dialect, describe, prober = _probe_of(engine)
    known = tuple(migration_name(m.version, m.name) for m in migrations(dialect))

    def report(*, error: str | None = None, found: Probe | None = None) -> Health:
        return Health(
            database=describe(engine),
            reachable=found is not None,
            error=error,
            applied=() if found is None else found.applied,
            known=known,
            node=node,
            heartbeat_age=None if found is None else found.heartbeat_age,
            window=window,
        )

    try:
        async with asyncio.timeout(timeout):
            found = await prober(engine, node=node, timeout=timeout)
    except TimeoutError:
        return report(error=f"no answer within {timeout:g}s")
    except DatabaseError as exc:
        return report(error=" ".join(str(exc).split()))  # one line (libpq adds hints)
    return report(found=found)


def _probe_of(engine: Engine) -> tuple[str, Callable[[object], str], Prober]:
    """The dialect, the ``describe`` and the ``probe`` of ``engine``'s kind (by its URL
    scheme, as :func:`~underway.jobs.engines.open_engine` chose it)."""
    scheme = urlsplit(str(getattr(engine, "url", ""))).scheme
    if scheme == "sqlite":
        from underway.jobs.engines.sqlite import _probe as sqlite

        return "sqlite", sqlite.describe, sqlite.probe
    if scheme in ("postgresql", "postgres"):
        from underway.jobs.engines.postgres import _probe as postgres

        return "postgres", postgres.describe, postgres.probe
    raise ConfigError(f"no health check for the database engine {engine!r}")
