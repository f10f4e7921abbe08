"""Jobs.queues, Jobs.nodes and Jobs.cron_entries: what a dashboard's overview shows, on both
engines, read from indexes and heartbeats (never the history)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from datetime import UTC, datetime
from typing import Any

import pytest

import underway
from underway.errors import ConfigError
from underway.jobs import Job, Jobs, JobState, NodeQueue
from underway.jobs._overview import WAITING_STATES, next_slot, node_queues, overview
from underway.jobs.engines._sql import query

from ..conftest import Database, MakeJobs, wait_until


def _blocking_worker(app: Jobs, name: str, queue: str) -> tuple[asyncio.Event, list[int]]:
    """A worker that runs until the returned event is set; the list collects started ids."""
    release, started = asyncio.Event(), []

    @app.worker(name=name, queue=queue)
    async def hold(job: Job[Any]) -> None:
        started.append(job.id)
        await release.wait()

    return release, started


async def test_queues_count_waiting_and_running_jobs_and_show_each_node(
    make_jobs: MakeJobs, database: Database
) -> None:
    app = make_jobs(node_name="node-a", queues={"default": 2, "mail": 3})
    release, started = _blocking_worker(app, "overview.hold", "default")
    app.migrate_sync()
    # Rows as other processes leave them: history that must not be counted, and waiting jobs
    # of a queue no node runs.
    for state in ("completed", "discarded", "cancelled"):
        database.add_job(state, queue="default", worker="overview.hold")
    database.add_job("scheduled", queue="reports", worker="w", scheduled_at=time.time() + 600)
    database.add_job("retryable", queue="reports", worker="w", scheduled_at=time.time() + 600)
    database.add_job("retryable", queue="reports", worker="w", scheduled_at=time.time() + 600)

    async with app:
        for _ in range(5):
            await app.workers["overview.hold"].enqueue({})
        await wait_until(lambda: len(started) == 2, message="two jobs running")

        def reported() -> Any:
            found = {q.name: q for q in app.queues_sync()}
            default = found["default"]
            return found if default.nodes and default.nodes[0].running == 2 else None

        queues = await wait_until(reported, message="the heartbeat reports two running")
        assert sorted(queues) == ["default", "mail", "reports"]
        default, mail, reports = queues["default"], queues["mail"], queues["reports"]
        assert dict(default.counts) == {
            JobState.SCHEDULED: 0,
            JobState.AVAILABLE: 3,
            JobState.EXECUTING: 2,
            JobState.RETRYABLE: 0,
        }
        assert default.nodes == (
            NodeQueue(node="node-a", queue="default", limit=2, running=2, paused=False),
        )
        assert (default.limit, default.running, default.paused) == (2, 2, False)
        assert set(mail.counts.values()) == {0}
        assert mail.nodes[0].limit == 3
        assert mail.nodes[0].running == 0
        assert reports.counts[JobState.SCHEDULED] == 1
        assert reports.counts[JobState.RETRYABLE] == 2
        assert reports.nodes == ()
        assert not reports.paused
        assert await app.queues() == app.queues_sync()
        release.set()


async def test_a_paused_and_scaled_queue_shows_so_after_the_next_heartbeat(
    make_jobs: MakeJobs,
) -> None:
    app = make_jobs(node_name="node-a", queues={"default": 2, "mail": 1})
    other = make_jobs(node_name="node-b", queues={"default": 4})
    async with app, other:
        await app.pause_queue("default", local_only=True)
        await app.scale_queue("mail", 5)

        def paused() -> Any:
            found = {q.name: q for q in app.queues_sync()}
            by_node = {n.node: n for n in found["default"].nodes}
            ok = by_node.get("node-a") and by_node["node-a"].paused and "node-b" in by_node
            return found if ok and found["mail"].limit == 5 else None

        queues = await wait_until(paused, message="the pause and the scale reported")
        default = queues["default"]
        assert [(n.node, n.limit, n.paused) for n in default.nodes] == [
            ("node-a", 2, True),
            ("node-b", 4, False),
        ]
        assert default.partly_paused
        assert not default.paused
        assert default.limit == 6

        await other.pause_queue("default", local_only=True)
        queues = await wait_until(
            lambda: {q.name: q for q in app.queues_sync() if q.paused} or None,
            message="paused everywhere",
        )
        assert set(queues) == {"default"}
        assert not queues["default"].partly_paused


async def test_a_node_of_an_older_version_still_shows(
    make_jobs: MakeJobs, database: Database
) -> None:
    """A heartbeat without running jobs, paused queues or version: ``None`` there."""
    app = make_jobs(node_name="reader")
    app.migrate_sync()
    now = time.time()
    database.add_node("old-node", started_at=now - 100, heartbeat_at=now)
    meta = {"host": "h", "pid": 7, "queues": {"default": 4, "bad": "x"}, "workers": ["a"]}
    database.sql("UPDATE underway_nodes SET meta = ? WHERE name = ?", json.dumps(meta), "old-node")

    [default] = [q for q in await app.queues() if q.name == "default"]
    assert default.nodes == (
        NodeQueue(node="old-node", queue="default", limit=4, running=None, paused=None),
    )
    assert (default.running, default.paused) == (0, False)
    [node] = await app.nodes()
    assert node.name == "old-node"
    assert node.version is None
    assert (node.host, node.pid, node.workers) == ("h", 7, ("a",))
    assert [q.queue for q in node.queues] == ["default"]


async def test_nodes_tell_age_leader_queues_and_version(
    make_jobs: MakeJobs, database: Database
) -> None:
    app = make_jobs(node_name="node-a", queues={"default": 2, "mail": 3}, rescue_after=30.0)
    _blocking_worker(app, "overview.nodes", "mail")
    app.migrate_sync()
    stale = time.time() - 120
    database.add_node("gone", started_at=stale - 60, heartbeat_at=stale)
    before = time.time()
    async with app:
        nodes = await wait_until(
            lambda: [n for n in app.nodes_sync() if n.leader] and app.nodes_sync(),
            message="node-a leads",
        )
        after = time.time()
        assert [n.name for n in nodes] == ["gone", "node-a"]
        gone, node = nodes
        assert node.alive
        assert node.leader
        assert node.version == underway.__version__
        assert (node.host, node.pid) == (socket.gethostname(), os.getpid())
        assert node.workers == ("overview.nodes",)
        assert [(q.queue, q.limit, q.running, q.paused) for q in node.queues] == [
            ("default", 2, 0, False),
            ("mail", 3, 0, False),
        ]
        assert before - 1 <= node.started_at.timestamp() <= after + 1
        assert node.started_at.tzinfo is UTC
        assert 0 <= node.heartbeat_age < 30
        assert not gone.alive
        assert not gone.leader
        assert gone.heartbeat_age >= 110
        assert gone.queues == ()
        assert [n.name for n in await app.nodes()] == ["gone", "node-a"]


async def test_cron_entries_show_last_and_next_slot(make_jobs: MakeJobs) -> None:
    app = make_jobs(node_name="node-a", queues={"default": 1, "reports": 1})

    @app.worker(name="overview.report")
    def report(job: Job[Any]) -> None:
        pass

    every_minute = app.add_cron("* * * * *", report, args={"kind": "daily"}, queue="reports")
    hourly = app.add_cron("@hourly", report, timezone="Europe/Paris")
    app.add_cron("@reboot", report)

    before = time.time()
    first = await app.cron_entries()
    assert [e.expression for e in first] == ["* * * * *", "@hourly", "@reboot"]
    assert [e.last_slot for e in first] == [None, None, None]
    minute, hour, reboot = first
    assert (minute.worker, minute.queue, dict(minute.args)) == (
        "overview.report",
        "reports",
        {"kind": "daily"},
    )
    assert (hour.queue, hour.timezone, hour.key) == ("default", "Europe/Paris", hourly.key)
    assert minute.next_slot is not None
    assert hour.next_slot is not None
    assert before < minute.next_slot.timestamp() <= before + 61
    assert minute.next_slot.second == 0
    assert hour.next_slot.minute == 0
    assert reboot.next_slot is None

    slot = float(int(before // 60) * 60)
    spec = every_minute.spec(meta_extra={"cron": every_minute.key, "cron_slot": slot})
    await app.engine.open()
    assert await app.engine.insert_for_slot(every_minute.key, slot, spec) is not None
    minute, hour, _ = app.cron_entries_sync()
    assert minute.last_slot == datetime.fromtimestamp(slot, UTC)
    assert hour.last_slot is None


async def test_an_app_without_cron_entries_lists_none(make_jobs: MakeJobs) -> None:
    assert await make_jobs().cron_entries() == []


def test_next_slot_follows_the_timezone_and_skips_reboot() -> None:
    now = datetime(2024, 3, 30, 22, 59, 30, tzinfo=UTC).timestamp()
    paris = next_slot("0 1 * * *", "Europe/Paris", now)  # 01:00 in Paris is 00:00 UTC
    assert paris == datetime(2024, 3, 31, 0, 0, tzinfo=UTC).timestamp()
    assert next_slot("@daily", "UTC", now) == datetime(2024, 3, 31, tzinfo=UTC).timestamp()
    assert next_slot(" @Reboot ", "UTC", now) is None
    assert next_slot("0 0 30 2 *", "UTC", now) is None  # February 30th never comes


def test_a_heartbeat_meta_of_another_shape_reads_as_far_as_it_can() -> None:
    assert node_queues("n", {}) == ()
    assert node_queues("n", {"queues": ["default"]}) == ()
    meta = {
        "queues": {"a": 2, "b": True, "c": -1, "d": 1},
        "running": {"a": "3", "d": 1},
        "paused": "d",
    }
    assert node_queues("n", meta) == (
        NodeQueue(node="n", queue="a", limit=2, running=None, paused=None),
        NodeQueue(node="n", queue="d", limit=1, running=1, paused=None),
    )


def test_an_engine_that_cannot_tell_is_refused() -> None:
    with pytest.raises(ConfigError, match="cannot tell what its queues and nodes do"):
        overview(object())


def test_waiting_states_are_every_unfinished_state() -> None:
    finished = {JobState.COMPLETED, JobState.DISCARDED, JobState.CANCELLED}
    assert set(WAITING_STATES) == set(JobState) - finished


@pytest.mark.sqlite_only
async def test_sqlite_counts_through_the_state_index(
    make_jobs: MakeJobs, database: Database
) -> None:
    """The counts search the (state, queue, id) index for the waiting states: the entries of
    finished jobs are never read."""
    make_jobs().migrate_sync()
    sql = query("sqlite", "queue_counts")
    plan = " ".join(str(row[3]) for row in database.sql("EXPLAIN QUERY PLAN " + sql))
    assert "SEARCH underway_jobs USING COVERING INDEX underway_jobs_state (state=?)" in plan
    assert "SCAN" not in plan
