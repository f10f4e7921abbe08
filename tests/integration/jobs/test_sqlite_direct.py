"""Small inserts run on the caller's thread when the lock is free, and wait when it is not."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.integration.conftest import MakeJobs, wait_for_state
from underway.jobs import Job
from underway.jobs.engines.sqlite._direct import DirectWriter


def _hold_write_lock(
    connect: Callable[[], sqlite3.Connection], seconds: float
) -> tuple[threading.Thread, threading.Event]:
    held = threading.Event()

    def hold() -> None:
        conn = connect()
        conn.execute("BEGIN IMMEDIATE")
        held.set()
        time.sleep(seconds)
        conn.execute("COMMIT")

    thread = threading.Thread(target=hold)
    thread.start()
    return thread, held


async def test_enqueue_while_locked_waits_for_the_lock_off_the_loop(
    make_jobs: MakeJobs, raw_db: Callable[[], sqlite3.Connection]
) -> None:
    jobs = make_jobs()

    @jobs.worker
    async def work(job: Job[Any]) -> None:
        return None

    await work.enqueue({"warm": True})  # the engine is connected: later inserts go direct
    thread, held = _hold_write_lock(raw_db, 0.4)
    await asyncio.to_thread(held.wait)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(tick())
    started = time.monotonic()
    job = await work.enqueue({"during": "lock"})
    waited = time.monotonic() - started
    ticker.cancel()
    await asyncio.to_thread(thread.join)
    assert waited >= 0.2, "the insert cannot have run while another connection held the lock"
    assert ticks >= 10, "the event loop was blocked while the insert waited for the lock"
    assert jobs.get_job_sync(job.id) is not None


def test_sync_enqueue_while_locked_waits_then_succeeds(
    make_jobs: MakeJobs, raw_db: Callable[[], sqlite3.Connection]
) -> None:
    jobs = make_jobs()

    @jobs.worker
    def work(job: Job[Any]) -> None:
        return None

    work.enqueue_sync({"warm": True})
    thread, held = _hold_write_lock(raw_db, 0.3)
    held.wait()
    job = work.enqueue_sync({"during": "lock"})
    thread.join()
    assert jobs.get_job_sync(job.id) is not None


async def test_direct_insert_wakes_a_running_node(make_jobs: MakeJobs) -> None:
    jobs = make_jobs(poll_interval=30.0)

    @jobs.worker
    async def work(job: Job[Any]) -> None:
        return None

    async with jobs:
        await work.enqueue({"warm": True})
        started = time.monotonic()
        job = await work.enqueue({"n": 1})
        await wait_for_state(jobs, job.id, timeout=15.0)
        assert time.monotonic() - started < 10.0  # woken, not polled every 30 s


def test_direct_writer_asks_for_checkpoints_and_reports_busy(tmp_path: Path) -> None:
    path = str(tmp_path / "direct.db")
    setup = sqlite3.connect(path, isolation_level=None)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE t (x INTEGER)")
    asked: list[int] = []
    writer = DirectWriter(
        path, synchronous="NORMAL", checkpoint=lambda: asked.append(1), checkpoint_every=5
    )
    try:
        for i in range(12):

            def insert(c: sqlite3.Connection, i: int = i) -> sqlite3.Cursor:
                return c.execute("INSERT INTO t VALUES (?)", (i,))

            done, _ = writer.try_write(insert)
            assert done
        assert len(asked) == 2
        setup.execute("BEGIN IMMEDIATE")
        done, result = writer.try_write(lambda c: c.execute("INSERT INTO t VALUES (99)"))
        assert (done, result) == (False, None)
        setup.execute("COMMIT")
        assert setup.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 12
    finally:
        writer.close()
        setup.close()
