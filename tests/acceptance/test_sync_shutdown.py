"""A sync job still running when a node process stops is never run twice at once.

A thread cannot be interrupted. ``Jobs.run`` therefore ends the process at once when the
grace period is over, leaving the job ``executing``; another node rescues it only after
the stopped node's heartbeat has expired.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from tests.acceptance._procs import ROOT, wait_for

pytestmark = [pytest.mark.acceptance, pytest.mark.slow]

APP = textwrap.dedent(
    """
    import os, sys, time
    from underway.jobs import Jobs

    jobs = Jobs(
        f"sqlite:///{sys.argv[1]}", queues={"default": 1}, node_name=sys.argv[2],
        poll_interval=0.05, stage_interval=0.05, heartbeat_interval=0.2, rescue_after=1.0,
        leader_ttl=1.0,
        shutdown_grace=0.3,
    )
    LOG = sys.argv[3]

    def log(line):
        fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, (line + "\\n").encode())
        os.close(fd)

    @jobs.worker(name="acceptance.slow_sync")
    def slow_sync(job):
        log(f"start {job.attempt} {sys.argv[2]} {time.time()}")
        time.sleep(30 if job.attempt == 1 else 0.1)
        log(f"end {job.attempt} {sys.argv[2]}")

    if __name__ == "__main__":
        jobs.run()
    """
)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _job_row(db: Path) -> tuple[str, int]:
    with closing(sqlite3.connect(db)) as conn:
        row = conn.execute("SELECT state, attempt FROM underway_jobs").fetchone()
    return (row[0], row[1]) if row else ("", 0)


def test_sigterm_leaves_a_running_sync_job_for_rescue_and_it_runs_once_at_a_time(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    app, db, log = tmp_path / "syncapp.py", tmp_path / "jobs.db", tmp_path / "runs.log"
    app.write_text(APP)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def node(name: str) -> subprocess.Popen[bytes]:
        with (tmp_path / f"{name}.out").open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, str(app), str(db), name, str(log)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=tmp_path,
            )
        procs.append(proc)
        return proc

    enqueue = textwrap.dedent(
        f"""
        import sys; sys.argv = ["x", {str(db)!r}, "client", {str(log)!r}]
        exec(open({str(app)!r}).read().split("if __name__")[0])
        slow_sync.enqueue_sync({{}})
        """
    )
    subprocess.run([sys.executable, "-c", enqueue], check=True, env=env, cwd=tmp_path)
    a = node("node-a")
    wait_for(lambda: _lines(log), timeout=15, what="node-a to start the job")
    stopped_at = time.time()
    a.send_signal(signal.SIGTERM)
    assert a.wait(timeout=10) == 0
    assert time.time() - stopped_at < 5, "the node waited for a thread it cannot stop"
    assert _job_row(db) == ("executing", 1), "the job stays claimed: its thread was running"

    b = node("node-b")
    wait_for(lambda: _job_row(db)[0] == "completed", timeout=20, what="node-b to finish it")
    lines = _lines(log)
    assert [line.split()[:3] for line in lines] == [
        ["start", "1", "node-a"],
        ["start", "2", "node-b"],
        ["end", "2", "node-b"],
    ]
    rerun_at = float(lines[1].split()[3])
    assert rerun_at >= stopped_at + 0.5, "rescued before node-a's heartbeat could expire"
    b.send_signal(signal.SIGTERM)
    assert b.wait(timeout=10) == 0
