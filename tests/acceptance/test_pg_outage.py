"""A database outage longer than ``rescue_after`` while long jobs run on three node processes.

Nobody can heartbeat during an outage, so when the database comes back every node's last
heartbeat is older than ``rescue_after``. The rescuer must not take that as evidence that
the nodes died: no job may run twice while its node is alive, and no two runs of one job
may overlap. The jobs write a ledger of their runs to files (``start`` and ``finish`` with
node, attempt and time), so runs are recorded while the database is unreachable too.

Three kinds of outage:
- the link cut: the nodes reach the server through a TCP proxy that refuses connections
  and aborts the open ones for a while (a failover, a crashed server);
- the link silent: the proxy forwards nothing for a while, so every call hangs and none
  fails (a network partition); both run in the main suite;
- the server stopped (``pg_ctlcluster stop``, then ``start``), opt-in with
  ``UNDERWAY_PG_RESTART=1`` like the restart test (``.ci/run`` runs it after the suite),
  since it takes the server away from every other test as well.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.acceptance._pg_procs import PgCluster, cluster, database
from tests.acceptance._procs import Event, read_events
from tests.acceptance._tcp_proxy import TcpProxy
from tests.acceptance.pg_nodeapp import LEDGER, client
from tests.acceptance.test_pg_restart import _restart_command, _wait_for_server

pytestmark = [pytest.mark.postgres, pytest.mark.acceptance, pytest.mark.slow]

RESCUE_AFTER = 3.0
OUTAGE = 3 * RESCUE_AFTER
OUTAGES = 2
NODES = ("node-a", "node-b", "node-c")
LONG = 2 * (OUTAGE + RESCUE_AFTER) + 4  # seconds: runs through both outages and past them
SHORT = (1.5, 3.0, 4.5, 6.0, 7.5, 9.0)  # some finish during the outage: their acks wait


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with database("outage") as found:
        yield found


@pytest.fixture
def pg(url: str, tmp_path: Path) -> Iterator[PgCluster]:
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    yield from cluster(
        url,
        tmp_path,
        heartbeat=1.0,
        rescue_after=RESCUE_AFTER,
        leader_ttl=1.0,
        poll=0.2,
        log_dir=str(ledger),
        queues="default=10",
    )


Toggle = Callable[[], None]
Outage = Callable[[str], AbstractContextManager[tuple[str, Toggle, Toggle]]]


@contextmanager
def _proxied(url: str) -> Iterator[tuple[str, TcpProxy]]:
    """A proxy to ``url``'s server and the URL that goes through it."""
    parts = urlsplit(url)
    with TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432) as proxy:
        user = f"{parts.username}@" if parts.username else ""
        yield urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{proxy.port}")), proxy


@contextmanager
def _cut_link(url: str) -> Iterator[tuple[str, Toggle, Toggle]]:
    """Connections refused and the open ones aborted (a stopped server, a failover)."""
    with _proxied(url) as (proxied, proxy):
        yield proxied, proxy.cut, proxy.restore


@contextmanager
def _silent_link(url: str) -> Iterator[tuple[str, Toggle, Toggle]]:
    """Nothing gets through and nothing fails: every call hangs (a partition)."""
    with _proxied(url) as (proxied, proxy):
        yield proxied, proxy.stall, proxy.restore


@contextmanager
def _stopped_server(url: str) -> Iterator[tuple[str, Toggle, Toggle]]:
    """``url`` itself, and a stop and a start of the local server (started again at exit)."""
    restart = _restart_command()
    stop, start = [*restart[:-1], "stop"], [*restart[:-1], "start"]

    def down() -> None:
        done = subprocess.run(stop, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, f"{stop} failed: {done.stdout}{done.stderr}"

    def up() -> None:
        subprocess.run(start, capture_output=True, text=True, timeout=60, check=False)
        _wait_for_server(restart)

    try:
        yield url, down, up
    finally:
        up()


def _started(events: list[Event]) -> set[int]:
    return {e.job_id for e in events if e.kind == "start"}


def _overlaps(events: list[Event]) -> list[str]:
    """Runs of one job that overlap in time (a start while another run had not finished)."""
    found = []
    open_runs: dict[int, list[Event]] = {}
    for e in events:
        runs = open_runs.setdefault(e.job_id, [])
        if e.kind == "start":
            if runs:
                found.append(f"job {e.job_id}: {e.node}/{e.attempt} began while {runs} ran")
            runs.append(e)
        elif runs:
            runs[:] = [r for r in runs if r.node != e.node]
    return found


def _outage_with_long_jobs(pg: PgCluster, outage: Outage) -> None:
    with outage(pg.base.dsn) as (node_dsn, cut, restore):
        with client(pg.base) as jobs:
            ledger = jobs.workers[LEDGER]
            specs = [ledger.new({"seconds": LONG, "i": i}) for i in range(9)]
            specs += [ledger.new({"seconds": s, "i": i}) for i, s in enumerate(SHORT * 3)]
            ids = [j.id for j in jobs.enqueue_many_sync(specs)]
        for name in NODES:
            pg.start_node(name, wait=False, dsn=node_dsn)
        log_dir = Path(pg.base.log_dir)
        pg.wait_for(
            lambda: _started(read_events(log_dir)) == set(ids),
            timeout=30,
            what="every job to start",
        )
        for _ in range(OUTAGES):
            cut()
            try:
                time.sleep(OUTAGE)
            finally:
                restore()
            time.sleep(RESCUE_AFTER)  # long enough for a rescuer to judge, too short to heal
        back = time.monotonic()
        pg.wait_for(
            lambda: pg.completed() == len(ids),
            timeout=90,
            what="every job to complete after the outage",
            interval=0.2,
        )
        recovered = time.monotonic() - back
        for name, proc in pg.procs:
            assert proc.poll() is None, f"{name} exited:\n{pg.output()}"
        events = read_events(log_dir)
        starts = [e for e in events if e.kind == "start"]
        twice = sorted({e.job_id for e in starts if sum(s.job_id == e.job_id for s in starts) > 1})
        assert twice == [], (
            f"jobs ran twice while their nodes were alive: "
            f"{[(e.job_id, e.node, e.attempt, e.at) for e in starts if e.job_id in twice]}"
        )
        assert _overlaps(events) == []
        assert len([e for e in events if e.kind == "finish"]) == len(ids)
        rescued = pg.query("SELECT id FROM {s}.underway_jobs WHERE errors::text LIKE '%%rescued%%'")
        assert rescued == [], f"jobs rescued from live nodes: {rescued}"
        for name, proc in pg.procs:
            assert pg.stop(proc) == 0, f"{name} did not stop cleanly:\n{pg.output()}"
        print(f"every job completed {recovered:.1f}s after {OUTAGES} outages of {OUTAGE}s")


def test_a_cut_link_longer_than_rescue_after_runs_no_job_twice(pg: PgCluster) -> None:
    _outage_with_long_jobs(pg, _cut_link)


def test_a_silent_link_longer_than_rescue_after_runs_no_job_twice(pg: PgCluster) -> None:
    _outage_with_long_jobs(pg, _silent_link)


@pytest.mark.skipif(
    os.environ.get("UNDERWAY_PG_RESTART") != "1",
    reason="stops the local PostgreSQL server: opt in with UNDERWAY_PG_RESTART=1 (.ci/run does)",
)
def test_a_stopped_server_longer_than_rescue_after_runs_no_job_twice(pg: PgCluster) -> None:
    _outage_with_long_jobs(pg, _stopped_server)
