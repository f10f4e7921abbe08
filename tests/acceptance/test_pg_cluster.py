"""Node processes sharing one PostgreSQL database: throughput, kill -9, failover, cron.

Each test runs real node processes (``python -m tests.acceptance.pg_nodeapp``) on a schema
of its own and reads what happened from the jobs table, the lease table and the ``runs``
table the jobs write themselves (one row per execution, in its own transaction).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.acceptance._pg_procs import PgCluster, cluster, database, runs_per_job, wait_until
from tests.acceptance._procs import kill9
from tests.acceptance.pg_nodeapp import client

pytestmark = [pytest.mark.postgres, pytest.mark.acceptance]


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with database("cluster") as found:
        yield found


@pytest.fixture
def pg(url: str, tmp_path: Path) -> Iterator[PgCluster]:
    yield from cluster(url, tmp_path)


def _start(pg: PgCluster, names: tuple[str, ...], **changes: object) -> None:
    for name in names:
        pg.start_node(name, wait=False, **changes)
    pg.wait_for(lambda: all(pg.alive(n) for n in names), timeout=20, what=f"{names} to start")


@pytest.mark.slow
def test_three_nodes_run_20000_jobs_once_each(pg: PgCluster) -> None:
    total, batch = 20_000, 2_500
    nodes = ("node-a", "node-b", "node-c")
    ids = pg.enqueue([{"n": n} for n in range(batch * 2)])
    _start(pg, nodes, queues="default=50", pool_size=6)
    pg.wait_for(lambda: pg.completed() > 0, timeout=20, what="the first completion")
    while len(ids) < total:
        ids += pg.enqueue([{"n": n} for n in range(len(ids), len(ids) + batch)])
    assert pg.completed() < total, "every job was done before the last batch went in"
    assert len(set(ids)) == total

    pg.wait_for(
        lambda: pg.completed() == total, timeout=60, what=f"{total} jobs to complete", interval=0.2
    )
    for name, proc in pg.procs:
        assert pg.stop(proc) == 0, f"{name} did not stop cleanly:\n{pg.output()}"

    assert pg.states() == Counter({"completed": total})
    runs = pg.runs()
    per_job = runs_per_job(runs)
    assert set(per_job) == set(ids), "some jobs never ran"
    assert [i for i, n in per_job.items() if n > 1] == [], "some jobs ran twice"
    per_node = Counter(r.node for r in runs)
    assert set(per_node) == set(nodes), f"work per node: {dict(per_node)}"
    print(f"work per node: {dict(per_node)}")


@pytest.mark.slow
def test_kill9_mid_run_rescues_its_jobs_only_after_its_heartbeat_expires(pg: PgCluster) -> None:
    total, rescue_after = 600, pg.base.rescue_after
    ids = pg.enqueue([{"n": n, "seconds": 0.1} for n in range(total)])
    node_b = pg.start_node("node-b")  # the leader: the rescue waits on the heartbeat alone
    pg.wait_for(lambda: pg.leader() == "node-b", timeout=10, what="node-b to lead")
    node_a = pg.start_node("node-a")
    pg.wait_for(
        lambda: pg.runs_by("node-a") >= 50 and pg.executing_on("node-a"),
        timeout=20,
        what="node-a to be busy",
    )

    kill9(node_a)
    held = pg.executing_on("node-a")
    last_beat = pg.heartbeat_at("node-a")
    assert held, "node-a held no executing job when it was killed"
    assert last_beat is not None, "node-a's heartbeat was dropped while it was alive"
    assert pg.completed() < total, "the run was over before the kill"
    expires = last_beat + rescue_after

    pg.wait_for(lambda: pg.completed() == total, timeout=30, what="every job to complete")
    assert pg.states() == Counter({"completed": total})
    runs = pg.runs()
    per_job = runs_per_job(runs)
    assert set(per_job) == set(ids)
    twice = {i for i, n in per_job.items() if n > 1}
    assert twice <= held, f"jobs not held by node-a ran twice: {sorted(twice - held)}"
    assert max(per_job.values()) <= 2
    for job_id in held:
        mine = [r for r in runs if r.job_id == job_id]
        assert mine[-1].node == "node-b", f"job {job_id} did not end on node-b: {mine}"
        assert all(r.node == "node-a" for r in mine[:-1])
        assert mine[-1].at >= expires, (
            f"job {job_id} re-ran {expires - mine[-1].at:.3f}s before node-a's heartbeat expired"
        )
        rescues = [e for e in pg.errors(job_id) if "rescued" in e["error"]]
        assert len(rescues) == 1, pg.errors(job_id)
        assert "node-a" in rescues[0]["error"]
        assert rescues[0]["at"] >= expires
    print(f"held by node-a at the kill: {len(held)}; ran twice: {len(twice)}")
    assert pg.leader() == "node-b"
    assert pg.stop(node_b) == 0


@pytest.mark.slow
def test_leader_failover_within_the_lease_and_the_new_leader_rescues(pg: PgCluster) -> None:
    ttl, tick = pg.base.leader_ttl, pg.base.leader_ttl / 3
    nodes = ("node-a", "node-b", "node-c")
    _start(pg, nodes)
    leader = pg.wait_for(pg.leader, timeout=10, what="a leader")
    ids = pg.enqueue([{"n": n, "seconds": {leader: 60.0, "*": 0.5}} for n in range(40)])
    pg.wait_for(
        lambda: pg.executing_on(leader) and pg.runs_by(leader),
        timeout=10,
        what=f"the leader {leader} to run jobs",
    )

    kill9(dict(pg.procs)[leader])
    held = pg.executing_on(leader)
    last_beat = pg.heartbeat_at(leader)
    lease = pg.lease()
    assert last_beat is not None
    assert lease is not None
    assert lease[0] == leader
    successor = Successor(pg, leader)
    new, new_expires = pg.wait_for(
        successor.poll, timeout=10, what="another node to take the lease", interval=0.01
    )
    acquired = new_expires - ttl  # read before its first renewal, a tick later
    assert new in nodes
    assert new != leader
    assert acquired >= lease[1] - 0.001, "the lease was taken before it expired"
    assert acquired - lease[1] <= tick + 0.5, (
        f"the lease was taken {acquired - lease[1]:.2f}s after it expired (a tick is {tick:.2f}s)"
    )

    pg.wait_for(lambda: pg.completed() == len(ids), timeout=20, what="every job to complete")
    for job_id in held:
        rescues = [e for e in pg.errors(job_id) if "rescued" in e["error"]]
        assert len(rescues) == 1, pg.errors(job_id)
        assert leader in rescues[0]["error"]
        assert rescues[0]["at"] >= last_beat + pg.base.rescue_after
        assert rescues[0]["at"] >= successor.absent_at, "rescued while nobody led"
    per_job = runs_per_job(pg.runs())
    twice = {i for i, n in per_job.items() if n > 1}
    assert twice, "none of the leader's jobs had started"
    assert twice <= held, (twice, held)
    assert pg.leader() == new
    print(f"lease moved from {leader} to {new} {acquired - lease[1]:.2f}s after it expired")


class Successor:
    """Polls the lease until a node other than ``old`` holds it.

    ``absent_at`` is when the last poll that found no successor started: the new lease was
    taken after that.
    """

    def __init__(self, pg: PgCluster, old: str) -> None:
        self.pg = pg
        self.old = old
        self.absent_at = time.time()

    def poll(self) -> tuple[str, float] | None:
        started = time.time()
        lease = self.pg.lease()
        if lease is None or lease[0] == self.old:
            self.absent_at = started
            return None
        return lease


_CRON_LOG = re.compile(r"cron .+?: enqueued job (\d+) for slot ([\d.]+)")


def _inserted_by(pg: PgCluster) -> dict[float, list[str]]:
    """Which node's log reports inserting the job of each cron slot."""
    found: dict[float, list[str]] = {}
    for name, _ in pg.procs:
        for _, slot in _CRON_LOG.findall(pg.log(name)):
            found.setdefault(float(slot), []).append(name)
    return found


def _cron_jobs(pg: PgCluster) -> list[tuple[int, float, float]]:
    """``(id, slot, inserted_at)`` of every cron job."""
    rows = pg.query(
        "SELECT id, (meta->>'cron_slot')::float8, extract(epoch FROM inserted_at)::float8 "
        "FROM {s}.underway_jobs WHERE meta ? 'cron_slot' ORDER BY id"
    )
    return [(i, slot, at) for i, slot, at in rows]


def _slots(pg: PgCluster) -> set[float]:
    return {slot for _, slot, _ in _cron_jobs(pg)}


@pytest.mark.slow
def test_cron_fires_once_per_slot_across_three_nodes_and_a_leader_change(pg: PgCluster) -> None:
    margin = 4.0  # seconds the first slot's minute must still have left at the kill
    if 60 - time.time() % 60 < margin + 3:
        wait_until(time.time() // 60 * 60 + 60.2)
    nodes = ("node-a", "node-b", "node-c")
    _start(pg, nodes, cron="* * * * *")
    first = pg.wait_for(lambda: max(_slots(pg), default=None), timeout=10, what="the first slot")
    if first + 60 - time.time() < margin:  # too close to the next slot: take that one
        first = pg.wait_for(
            lambda: max(_slots(pg)) if max(_slots(pg)) > first else None,
            timeout=margin + 5,
            what="the second slot",
        )
    pg.wait_for(  # so that the kill below cannot interrupt it
        lambda: pg.completed() == len(_cron_jobs(pg)), timeout=margin, what="the slot's job to run"
    )
    old = pg.leader()
    assert old is not None
    assert _inserted_by(pg)[first] == [old]

    kill9(dict(pg.procs)[old])
    pg.start_node("node-d", wait=False, cron="* * * * *")
    new = pg.wait_for(
        lambda: (pg.leader() or old) != old and pg.leader(), timeout=5, what="a new leader"
    )
    assert time.time() < first + 60, "the leader change did not happen within the first slot"
    pg.wait_for(lambda: pg.alive("node-d"), timeout=20, what="node-d to start")

    second = first + 60
    wait_until(second)
    pg.wait_for(lambda: second in _slots(pg), timeout=10, what="the second slot")
    time.sleep(1.2)  # every live scheduler ticks at least once within the second slot

    jobs = _cron_jobs(pg)
    per_slot = Counter(slot for _, slot, _ in jobs)
    assert per_slot[first] == 1, per_slot
    assert per_slot[second] == 1, per_slot
    assert set(per_slot) <= {first, second}, per_slot
    inserters = _inserted_by(pg)
    assert inserters[first] == [old]
    assert len(inserters[second]) == 1, inserters
    assert inserters[second][0] != old, inserters
    live = [proc for name, proc in pg.procs if name != old]
    pg.wait_for(lambda: pg.completed() == len(jobs), timeout=10, what="the cron jobs to run")
    per_job = runs_per_job(pg.runs())
    assert sorted(per_job) == sorted(i for i, _, _ in jobs)
    assert set(per_job.values()) == {1}, per_job
    for proc in live:
        assert pg.stop(proc) == 0
    print(f"slot {first:.0f} by {old}, slot {second:.0f} by {inserters[second][0]} (lease: {new})")


def test_nodes_with_different_workers_discard_nothing(pg: PgCluster) -> None:
    """A rolling deploy that adds a worker: the old node leaves the new worker's jobs alone."""
    only_b = "pg_acceptance.only_b"
    with client(replace(pg.base, extra_workers=only_b)) as jobs:
        new = jobs.workers[only_b]
        added = [j.id for j in jobs.enqueue_many_sync([new.new({"i": i}) for i in range(20)])]
    common = pg.enqueue([{"n": n} for n in range(20)])
    _start(pg, ("node-a",))
    pg.wait_for(lambda: pg.completed() == 20, timeout=30, what="node-a to run its jobs")
    time.sleep(0.5)  # node-a keeps polling its queue meanwhile
    assert pg.states() == Counter({"completed": 20, "available": 20})

    _start(pg, ("node-b",), extra_workers=only_b)
    pg.wait_for(lambda: pg.completed() == 40, timeout=30, what="node-b to run the new jobs")
    ran_on = {r.job_id: r.node for r in pg.runs()}
    assert {ran_on[i] for i in added} == {"node-b"}
    assert set(ran_on) == {*added, *common}
    assert runs_per_job(pg.runs()) == Counter(dict.fromkeys([*added, *common], 1))
    for name, proc in pg.procs:
        assert pg.stop(proc) == 0, f"{name} did not stop cleanly:\n{pg.output()}"
