"""``underway start --processes N``: several node processes under one command."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from tests.acceptance.test_cli import Node, wait_until
from underway.jobs import Jobs, JobState

pytestmark = pytest.mark.acceptance


def _node_names(url: str) -> set[str]:
    path = url.removeprefix("sqlite:///")
    with closing(sqlite3.connect(path)) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM underway_nodes")}


def test_processes_run_several_nodes_that_share_the_work_and_stop_together(
    tmp_path: Path, url: str, client: Jobs, nodes: list[Node]
) -> None:
    add = client.workers["cli_app.add"]
    ids = [
        j.id
        for j in client.enqueue_many_sync(
            add.new({"a": i, "b": 0, "sleep": 0.05}) for i in range(60)
        )
    ]
    node = Node(
        tmp_path,
        "--database",
        url,
        "--processes",
        "2",
        "--node-name",
        "pool",
        "--stats-interval",
        "0",
    )
    nodes.append(node)
    wait_until(lambda: _node_names(url) >= {"pool-0", "pool-1"}, "two node processes")
    wait_until(
        lambda: all(client.get_job_sync(i).state is JobState.COMPLETED for i in ids),  # type: ignore[union-attr]
        "every job completed",
        timeout=20,
    )
    assert node.stop() == 0, node.log
    by = {client.get_job_sync(i).attempted_by for i in ids}  # type: ignore[union-attr]
    assert by == {"pool-0", "pool-1"}, "both processes ran jobs"
    assert _node_names(url) == set(), "both stopped cleanly and removed their heartbeat"
    assert node.log.count("stopped") >= 2


def test_processes_stop_instead_of_looping_when_the_children_cannot_start(
    tmp_path: Path, nodes: list[Node]
) -> None:
    bad = tmp_path / "corrupt.db"
    bad.write_bytes(b"this is not a database" * 100)
    node = Node(tmp_path, "--database", f"sqlite:///{bad}", "--processes", "2")
    nodes.append(node)
    assert node.proc.wait(timeout=20) == 1, node.log
    assert node.log.count("cannot run") >= 1, node.log  # the other child may be stopped first
    assert "failed to start" in node.log
