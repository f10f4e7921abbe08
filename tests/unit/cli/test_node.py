"""``underway start``'s node under the signal root: readiness, a parent's exit, a failed start."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from underway.cli._node import StopFailed, run_node
from underway.errors import DatabaseError
from underway.jobs import Job, Jobs


def _app(db: Path) -> tuple[Jobs, list[int]]:
    jobs = Jobs(f"sqlite:///{db}", queues={"default": 2}, node_name="unit-node")
    done: list[int] = []

    @jobs.worker(name="unit.add")
    async def add(job: Job[dict[str, Any]]) -> None:
        done.append(job.args["n"])

    return jobs, done


def test_the_node_reports_ready_once_and_stops_when_the_parent_is_gone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    jobs, done = _app(tmp_path / "node.db")
    ready_r, ready_w = os.pipe()
    parent_r, parent_w = os.pipe()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        node = loop.create_task(run_node(jobs, 0.01, ready_w, parent_r))
        try:
            assert await loop.run_in_executor(None, os.read, ready_r, 1) == b"1"
            await jobs.workers["unit.add"].enqueue({"n": 7})
            while not done:
                await asyncio.sleep(0.01)
            while "jobs by queue:" not in caplog.text:  # the reporter runs beside the node
                await asyncio.sleep(0.01)
            os.close(parent_w)  # as when the parent process exits
            await asyncio.wait_for(node, 30)
        finally:
            node.cancel()
            await asyncio.gather(node, return_exceptions=True)

    try:
        with caplog.at_level(logging.INFO, logger="underway"):
            asyncio.run(main())
        assert os.read(ready_r, 10) == b""  # one byte only, and the node closed its end
    finally:
        os.close(ready_r)
    assert done == [7]
    text = caplog.text
    for line in (
        "node unit-node started: database sqlite:///",
        "the parent process is gone; stopping",
        "node unit-node stopping: running jobs get up to 15.0s",
        "node unit-node stopped",
    ):
        assert line in text
    assert text.index("stopping: running jobs") < text.index("node unit-node stopping\n")


def test_a_node_that_cannot_start_raises_its_own_error(tmp_path: Path) -> None:
    db = tmp_path / "corrupt.db"
    db.write_bytes(os.urandom(8192))
    jobs, _ = _app(db)
    with pytest.raises(DatabaseError, match="file is not a database"):
        asyncio.run(run_node(jobs, 0, None, None))


def test_a_node_whose_stop_fails_raises_its_error(tmp_path: Path) -> None:
    jobs, _ = _app(tmp_path / "node.db")
    engine = jobs.engine
    close = engine.close

    async def close_badly() -> None:
        await close()
        raise DatabaseError("disk I/O error while closing")

    engine.close = close_badly  # type: ignore[method-assign]
    parent_r, parent_w = os.pipe()

    async def main() -> None:
        node = asyncio.create_task(run_node(jobs, 0, None, parent_r))
        while jobs.node is None:
            await asyncio.sleep(0.01)
        os.close(parent_w)  # stop as when the parent process exits
        await asyncio.wait_for(node, 30)

    with pytest.raises(StopFailed) as failed:
        asyncio.run(main())
    assert isinstance(failed.value.__cause__, DatabaseError)
    assert "while closing" in str(failed.value.__cause__)
