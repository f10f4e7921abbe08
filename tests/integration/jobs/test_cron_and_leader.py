"""Cron fires once per slot across nodes and leader changes; leadership fails over."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from underway.jobs import Job, JobState
from underway.jobs._runtime.leader import Leader
from underway.jobs._runtime.scheduler import Scheduler

from ..conftest import MakeJobs, wait_until

MINUTE = 60.0


async def test_three_nodes_fire_each_slot_once_over_virtual_minutes_with_leader_changes(
    make_jobs: MakeJobs,
) -> None:
    apps = [make_jobs(node_name=f"node-{i}") for i in range(3)]
    entries = []
    for app in apps:

        @app.worker(name="cron.report")
        async def report(job: Job[Any]) -> None:
            return None

        entries.append(app.add_cron("*/2 * * * *", report, args={"kind": "daily"}))
    for app in apps:
        await app.engine.open()
    start = (time.time() // 3600 + 1) * 3600  # an hour boundary ahead: a known slot grid
    now = start
    leader = 0
    schedulers = [
        Scheduler(
            app.engine,
            [entry],
            node=app.config.name,
            started_at=start - 3600,
            leader_since=lambda i=i: start - 3600 if leader == i else None,  # type: ignore[misc]
            wake=lambda queue: None,
            clock=lambda: now,
        )
        for i, (app, entry) in enumerate(zip(apps, entries, strict=True))
    ]
    # Ten virtual minutes in 15 s steps; the leader changes every 45 s, sometimes in the
    # middle of a slot's minute, and every node also ticks when it is not the leader.
    for step in range(40):
        now = start + step * 15.0
        if step % 3 == 0:
            leader = (leader + 1) % 3
        for scheduler in schedulers:
            await scheduler.tick()
        if step % 4 == 1:  # a restarted node forgets what it fired
            schedulers[leader]._fired.clear()

    found = apps[0].list_jobs_sync(worker="cron.report", limit=100)
    slots = sorted(j.meta["cron_slot"] for j in found)
    assert slots == [start + n * 2 * MINUTE for n in range(5)]
    assert all(j.state is JobState.AVAILABLE for j in found)


async def test_a_slot_missed_by_more_than_a_minute_is_skipped(make_jobs: MakeJobs) -> None:
    app = make_jobs()

    @app.worker
    async def report(job: Job[Any]) -> None:
        return None

    entry = app.add_cron("0 * * * *", report)
    await app.engine.open()
    hour = (time.time() // 3600) * 3600
    scheduler = Scheduler(
        app.engine,
        [entry],
        node="n",
        started_at=hour - 10,
        leader_since=lambda: hour - 10,
        wake=lambda queue: None,
        clock=lambda: hour + 90,
    )
    await scheduler.tick()
    assert app.list_jobs_sync() == []


async def test_leadership_is_exclusive_and_fails_over_within_the_lease(
    make_jobs: MakeJobs,
) -> None:
    a, b = make_jobs(), make_jobs()
    await a.engine.open()
    await b.engine.open()
    first = Leader(a.engine, node="node-a", ttl=1.0)
    second = Leader(b.engine, node="node-b", ttl=1.0)
    await first.tick()
    await second.tick()
    assert (first.is_leader, second.is_leader) == (True, False)
    await first.tick()  # renewal keeps it
    await second.tick()
    assert (first.is_leader, second.is_leader) == (True, False)
    died_at = time.monotonic()  # node-a stops renewing: it died
    while not second.is_leader and time.monotonic() - died_at < 15:
        await second.tick()
        await asyncio.sleep(0.05)
    took_over = time.monotonic() - died_at
    assert 0.5 < took_over < 10  # not before the lease ran out, and not never
    assert not first.is_leader  # a silent leader steps down on its own after the ttl
    await second.stop()  # a clean stop hands the lease over at once
    await first.tick()
    assert first.is_leader


async def test_reboot_entries_fire_once_when_a_fresh_node_leads(make_jobs: MakeJobs) -> None:
    jobs = make_jobs(leader_ttl=1.0)
    ran: list[int] = []

    @jobs.worker
    async def warm_cache(job: Job[Any]) -> None:
        ran.append(job.id)

    jobs.add_cron("@reboot", warm_cache)
    async with jobs:
        await wait_until(lambda: ran, timeout=5.0, message="the @reboot job ran")
        await asyncio.sleep(1.2)  # more scheduler ticks: nothing more
    assert len(ran) == 1
    again = make_jobs(leader_ttl=1.0)  # a node started later, after the lease expired

    @again.worker(name=warm_cache.name)
    async def warm_cache_again(job: Job[Any]) -> None:
        ran.append(job.id)

    again.add_cron("@reboot", warm_cache_again)
    async with again:
        await wait_until(lambda: len(ran) == 2, timeout=5.0, message="the restart fired it")
