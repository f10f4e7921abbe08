"""A PostgreSQL server restart while two node processes work through 5,000 jobs.

Opt-in: the test restarts the local server (``pg_ctlcluster ... restart``, as root), which
drops every connection to it, other test runs' included. Set ``UNDERWAY_PG_RESTART=1`` to
run it (``.ci/run`` does, after the main suite).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.acceptance._pg_procs import PgCluster, admin_url, cluster, database, runs_per_job
from tests.acceptance._procs import wait_for

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.acceptance,
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("UNDERWAY_PG_RESTART") != "1",
        reason="restarts the local PostgreSQL server: opt in with UNDERWAY_PG_RESTART=1 "
        "(.ci/run does)",
    ),
]

CLUSTERS = Path("/etc/postgresql")


def _restart_command() -> list[str]:
    """``pg_ctlcluster`` for the one local cluster (version directory, ``main``)."""
    versions = sorted(p.name for p in CLUSTERS.iterdir()) if CLUSTERS.is_dir() else []
    if len(versions) != 1 or os.geteuid() != 0:
        pytest.fail(
            f"UNDERWAY_PG_RESTART=1 needs root and one cluster under {CLUSTERS}, "
            f"found {versions} as uid {os.geteuid()}",
            pytrace=False,
        )
    return ["pg_ctlcluster", "--skip-systemctl-redirect", versions[0], "main", "restart"]


def _accepts_connections() -> bool:
    try:
        with psycopg.connect(admin_url(), connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return False
    return True


def _wait_for_server(command: list[str]) -> None:
    """Wait until the server accepts connections; start it if it stays down."""
    try:
        wait_for(_accepts_connections, timeout=30, what="PostgreSQL to come back", interval=0.2)
    except AssertionError:
        subprocess.run([*command[:-1], "start"], capture_output=True, timeout=60, check=False)
        wait_for(_accepts_connections, timeout=30, what="PostgreSQL to start", interval=0.2)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with database("restart") as found:
        yield found


@pytest.fixture
def pg(url: str, tmp_path: Path) -> Iterator[PgCluster]:
    yield from cluster(url, tmp_path)


def _completed_or_none(pg: PgCluster) -> int | None:
    """Completed jobs, or ``None`` while the server does not answer."""
    try:
        return pg.completed()
    except psycopg.OperationalError:
        return None


def test_nodes_reconnect_after_a_server_restart_and_lose_nothing(pg: PgCluster) -> None:
    command = _restart_command()
    total = 5_000
    ids = pg.enqueue([{"n": n, "seconds": 0.02} for n in range(total)])
    nodes = ("node-a", "node-b")
    for name in nodes:
        pg.start_node(name, wait=False, queues="default=20")
    pg.wait_for(
        lambda: pg.completed() >= total // 5, timeout=30, what=f"{total // 5} jobs to complete"
    )

    try:
        started = time.time()
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, f"{command} failed: {done.stdout}{done.stderr}"
    finally:
        _wait_for_server(command)
    back = time.time()
    before = pg.completed()
    assert before < total, "every job was done before the restart"
    print(f"restart took {back - started:.2f}s with {total - before} jobs left")

    pg.wait_for(
        lambda: _completed_or_none(pg) == total,
        timeout=60,
        what="every job to complete after the restart",
        interval=0.2,
    )
    for name, proc in pg.procs:
        assert proc.poll() is None, f"{name} exited:\n{pg.output()}"
    assert pg.states() == Counter({"completed": total})
    runs = pg.runs()
    per_job = runs_per_job(runs)
    assert set(per_job) == set(ids), "some jobs never ran"
    assert max(per_job.values()) <= 2, per_job.most_common(3)
    twice = sorted(i for i, n in per_job.items() if n == 2)
    after = Counter(r.node for r in runs if r.at > back)
    assert set(after) == set(nodes), f"runs per node after the restart: {dict(after)}"
    for name, proc in pg.procs:
        assert pg.stop(proc) == 0, f"{name} did not stop cleanly:\n{pg.output()}"
    retried = pg.query("SELECT COUNT(*) FROM {s}.underway_jobs WHERE attempt > 1")[0][0]
    print(f"jobs that ran twice (their ack was lost in the restart): {len(twice)} {twice[:10]}")
    print(f"jobs retried after an attempt failed in the restart: {retried}")
