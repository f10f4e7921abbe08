"""``underway health`` in subprocesses: exit codes, the failed checks printed with their
reasons, ``--json``, and a database that the check never migrates or creates."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.test_cli import Node, underway, wait_until
from underway.jobs.engines._sql import migrations

pytestmark = pytest.mark.acceptance

KNOWN = [f"{m.version:04d}_{m.name}" for m in migrations("sqlite")]


def health(url: str, *args: str) -> tuple[int, str, str]:
    result = underway("health", "--app", "cli_app:jobs", "--database", url, *args)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout, result.stderr


def tables(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        found = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        names = [str(name) for (name,) in found]
    conn.close()
    return names


def heartbeat_of(path: Path, node: str) -> float | None:
    if not path.exists():
        return None
    with sqlite3.connect(path) as conn:
        try:
            row = conn.execute(
                "SELECT heartbeat_at FROM underway_nodes WHERE name = ?", (node,)
            ).fetchone()
        except sqlite3.OperationalError:  # no tables yet
            row = None
    conn.close()
    return None if row is None else float(row[0])


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections (bound, never listening)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def test_a_missing_file_fails_and_is_not_created(tmp_path: Path, url: str) -> None:
    code, out, _ = health(url)

    assert code == 1
    assert out.splitlines()[0].startswith("FAILED database    no SQLite database at")
    assert "FAILED migrations  unknown: the database cannot be reached" in out
    assert out.splitlines()[-1] == "unhealthy: 2 check(s) failed"
    assert not (tmp_path / "jobs.db").exists()


def test_pending_migrations_fail_until_migrated_and_are_never_applied(
    tmp_path: Path, url: str
) -> None:
    path = tmp_path / "jobs.db"
    sqlite3.connect(path).close()  # an empty database

    code, out, _ = health(url)

    assert code == 1
    assert f"FAILED migrations  pending: {', '.join(KNOWN)} (run underway migrate)" in out
    assert out.splitlines()[0].startswith("ok     database")
    assert tables(path) == []

    assert underway("migrate", "--database", url).returncode == 0
    code, out, _ = health(url)
    assert code == 0, out
    assert out.splitlines() == [
        f"ok     database    {path} answered",
        f"ok     migrations  current ({len(KNOWN)} applied)",
        "healthy",
    ]


def test_a_node_is_healthy_while_it_runs_and_not_after_it_died(
    tmp_path: Path, url: str, nodes: list[Node]
) -> None:
    path = tmp_path / "jobs.db"
    node = Node(tmp_path, "--database", url, "--node-name", "web-1", "--stats-interval", "0")
    nodes.append(node)
    wait_until(lambda: heartbeat_of(path, "web-1") is not None, "the node's first heartbeat")

    code, out, _ = health(url, "--node", "web-1", "--json")

    assert code == 0, out
    report = json.loads(out)
    assert report["ok"] is True
    assert report["node"]["name"] == "web-1"
    assert report["node"]["alive"] is True
    assert report["node"]["window"] == 5.0  # cli_app's rescue_after

    node.proc.send_signal(signal.SIGKILL)  # dies without removing its heartbeat
    node.proc.wait(timeout=10)
    with sqlite3.connect(path) as conn:  # as if it died a minute ago
        conn.execute(
            "UPDATE underway_nodes SET heartbeat_at = ? WHERE name = 'web-1'", (time.time() - 60,)
        )
    conn.close()

    code, out, _ = health(url, "--node", "web-1")

    assert code == 1
    failed = [line for line in out.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1
    assert failed[0].startswith("FAILED node        node 'web-1' last heartbeated ")
    assert failed[0].endswith("s ago, longer than the 5s after which its jobs are rescued")

    code, out, _ = health(url, "--node", "web-2")
    assert code == 1
    assert "FAILED node        node 'web-2' has no heartbeat" in out


def test_json_of_an_unreachable_postgres(closed_port: int) -> None:
    url = f"postgresql://postgres:secret@127.0.0.1:{closed_port}/nothing"

    code, out, err = health(url, "--json", "--node", "web-1")

    assert code == 1
    assert err == ""
    report = json.loads(out)
    assert report["ok"] is False
    assert report["database"]["reachable"] is False
    assert "refused" in report["database"]["error"].lower()
    assert [c["ok"] for c in report["checks"]] == [False, False, False]
    assert "secret" not in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--timeout", "0"), "--timeout"),
        (("--timeout", "soon"), "--timeout"),
        (("--node", ""), "node must be a node's name"),
        (("--bogus",), "No such option"),
    ],
)
def test_usage_errors_exit_2(url: str, args: tuple[str, ...], message: str) -> None:
    code, _, err = health(url, *args)

    assert code == 2
    assert message in err


def test_an_app_or_a_database_is_needed() -> None:
    result = underway("health")

    assert result.returncode == 2
    assert "give --database URL or --app module:attr" in result.stderr
