"""The ``Health`` report as pure policy: which checks fail, and why."""

from __future__ import annotations

from underway.jobs import Health, HealthCheck

KNOWN = ("0001_initial", "0002_more")


def report(**fields: object) -> Health:
    base: dict[str, object] = {
        "database": "db",
        "reachable": True,
        "applied": KNOWN,
        "known": KNOWN,
        "window": 60.0,
    }
    return Health(**{**base, **fields})  # type: ignore[arg-type]


def test_current_and_reachable_is_ok_with_two_checks() -> None:
    health = report()

    assert health.ok
    assert health.problems == ()
    assert health.checks == (
        HealthCheck("database", True, "db answered"),
        HealthCheck("migrations", True, "current (2 applied)"),
    )


def test_pending_and_newer_migrations_are_found_by_version() -> None:
    health = report(applied=("0001_initial", "0003_future", "0004_later"))

    assert health.pending == ("0002_more",)
    assert health.newer == ("0003_future", "0004_later")
    assert not health.migrations_current
    (problem,) = health.problems
    assert problem.startswith("migrations: pending: 0002_more (run underway migrate); ")
    assert "0003_future, 0004_later" in problem


def test_the_window_is_inclusive_and_a_missing_heartbeat_fails() -> None:
    assert report(node="n", heartbeat_age=60.0).node_alive
    assert report(node="n", heartbeat_age=60.0).ok
    late = report(node="n", heartbeat_age=60.5)
    assert late.node_alive is False
    assert late.problems == (
        "node: node 'n' last heartbeated 60.5s ago, longer than the 60s after which its jobs "
        "are rescued",
    )
    assert report(node="n").node_alive is False
    assert report().node_alive is None


def test_unreachable_fails_every_check_and_knows_no_pending_migration() -> None:
    health = report(reachable=False, error="refused", applied=(), node="n")

    assert health.pending == ()
    assert health.problems == (
        "database: refused",
        "migrations: unknown: the database cannot be reached",
        "node: unknown: the database cannot be reached",
    )
    assert health.to_dict()["ok"] is False
