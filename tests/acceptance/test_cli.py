"""The ``underway`` command in subprocesses: start, migrate and the jobs commands."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.cli_app import make_jobs
from underway.jobs import Job, Jobs, JobState

HERE = Path(__file__).parent
pytestmark = pytest.mark.acceptance


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNDERWAY_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def underway(*args: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    """Run ``python -m underway.cli ARGS`` in this directory (where cli_app.py lives)."""
    return subprocess.run(
        [sys.executable, "-m", "underway.cli", *args],
        cwd=HERE,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert text in lines[0]


def stored(jobs: Jobs, job_id: int) -> Job[Any]:
    job = jobs.get_job_sync(job_id)
    assert job is not None, f"job {job_id} is missing"
    return job


def close(jobs: Jobs) -> None:
    asyncio.run(jobs.engine.close())


# -- start --------------------------------------------------------------------------------------


class Node:
    """An ``underway start`` subprocess with its log in a file."""

    def __init__(
        self, tmp_path: Path, *args: str, app: str = "cli_app:jobs", new_session: bool = False
    ) -> None:
        self.log_path = tmp_path / "node.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "underway.cli", "start", app, *args],
            cwd=HERE,
            env=_env(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,  # its own process group, as a terminal's job
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_start_runs_enqueued_jobs_and_stops_gracefully_on_signal(
    tmp_path: Path, url: str, client: Jobs, nodes: list[Node], sig: int
) -> None:
    add, send = client.workers["cli_app.add"], client.workers["cli_app.send"]
    quick = [add.enqueue_sync({"a": i, "b": 1}).id for i in range(6)]
    slow = send.enqueue_sync({"sleep": 1.5}).id

    node = Node(tmp_path, "--database", url, "--stats-interval", "0.2", "--node-name", "n-1")
    nodes.append(node)
    wait_until(lambda: "jobs by queue:" in node.log, "a stats line")
    wait_until(lambda: stored(client, slow).state is JobState.EXECUTING, "the slow job")
    assert node.stop(sig) == 0, node.log

    for job_id in [*quick, slow]:
        job = client.get_job_sync(job_id)
        assert job is not None
        assert job.state is JobState.COMPLETED, job
        assert job.attempt == 1
        assert job.attempted_by == "n-1"
    assert stored(client, quick[2]).result == 3
    log = node.log
    assert f"node n-1 started: database {url}, queues default=2, mail=3" in log
    assert f"received {signal.Signals(sig).name}; stopping" in log
    assert "node n-1 stopped" in log
    assert "Traceback" not in log


def test_a_second_signal_cuts_the_grace_short_and_hands_the_job_back(
    tmp_path: Path, url: str, client: Jobs, nodes: list[Node]
) -> None:
    long = client.workers["cli_app.add"].enqueue_sync({"a": 1, "b": 2, "sleep": 120}).id

    node = Node(tmp_path, "--database", url, "--node-name", "n-1", "--shutdown-grace", "60")
    nodes.append(node)
    wait_until(lambda: stored(client, long).state is JobState.EXECUTING, "the long job")
    node.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: "running jobs get up to 60.0s" in node.log, "the stop to begin")
    began = time.monotonic()
    assert node.stop(signal.SIGINT, timeout=30) == 0, node.log  # not the 60 s grace

    assert time.monotonic() - began < 30
    job = stored(client, long)
    assert (job.state, job.attempt, job.attempted_by) == (JobState.AVAILABLE, 0, None)
    log = node.log
    assert "received SIGINT again; hurrying the stop" in log
    assert "handing 1 unfinished job(s) back" in log
    assert "Traceback" not in log


def test_start_queue_option_replaces_the_apps_queues(
    tmp_path: Path, url: str, client: Jobs, nodes: list[Node]
) -> None:
    mail = client.workers["cli_app.send"].enqueue_sync({}).id
    other = client.workers["cli_app.add"].enqueue_sync({"a": 1, "b": 2}).id

    node = Node(tmp_path, "--database", url, "--queue", "mail=1", "--stats-interval", "0")
    nodes.append(node)
    wait_until(lambda: stored(client, mail).state is JobState.COMPLETED, "the mail job")
    assert node.stop() == 0, node.log

    assert stored(client, other).state is JobState.AVAILABLE
    assert "queues mail=1," in node.log
    assert "jobs by queue" not in node.log


def test_start_warns_that_an_app_without_workers_runs_no_jobs_and_leaves_them_waiting(
    tmp_path: Path, url: str, client: Jobs, nodes: list[Node]
) -> None:
    waiting = client.workers["cli_app.add"].enqueue_sync({"a": 1, "b": 2}).id

    node = Node(tmp_path, "--database", url, "--stats-interval", "0", app="cli_app:no_workers")
    nodes.append(node)
    wait_until(lambda: "started: database" in node.log, "the node to start")
    assert node.stop() == 0, node.log

    assert stored(client, waiting).state is JobState.AVAILABLE  # not discarded: it waits
    log = node.log
    assert (
        "cli_app:no_workers registers no workers, so this node runs no jobs; jobs in its "
        "queues stay available for nodes that have their workers" in log
    ), log
    assert "discarded" not in log


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("mail", "is not NAME=LIMIT"),
        ("mail=0", "must be an int >= 1"),
        ("mail=many", "must be a whole number"),
        ("b@d=2", "queue name must be"),
    ],
)
def test_start_rejects_a_bad_queue_option(value: str, message: str) -> None:
    result = underway("start", "cli_app:jobs", "--queue", value)
    assert result.returncode == 2
    assert "Invalid value for '--queue'" in result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_start_rejects_a_queue_given_twice() -> None:
    result = underway("start", "cli_app:jobs", "--queue", "a=1", "--queue", "a=2")
    assert result.returncode == 2
    assert "queue 'a' is given twice" in result.stderr


@pytest.mark.parametrize(
    ("app", "message"),
    [
        ("no_such_module_here:jobs", "no module named 'no_such_module_here'"),
        ("cli_app:missing", "module 'cli_app' has no attribute 'missing'"),
        ("cli_app:not_jobs", "cli_app:not_jobs is a dict, not an underway.jobs.Jobs app"),
        ("not a module", "app must look like module:attribute"),
    ],
)
def test_start_with_a_bad_app_is_a_one_line_usage_error(app: str, message: str) -> None:
    assert_one_line_error(underway("start", app), 2, message)


def test_start_on_a_corrupt_database_fails_fast_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.db"
    path.write_bytes(os.urandom(8192))
    began = time.monotonic()
    result = underway("start", "cli_app:jobs", "--database", f"sqlite:///{path}")
    assert time.monotonic() - began < 10
    assert_one_line_error(result, 1, "file is not a database")


def test_start_on_a_locked_database_fails_with_one_line(url: str, client: Jobs) -> None:
    client.migrate_sync()
    close(client)
    holder = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        result = underway("start", "cli_app:jobs", "--database", f"{url}?busy_timeout=0.3")
    finally:
        holder.close()
    assert_one_line_error(result, 1, "is locked")


def test_python_dash_m_underway_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "underway", "--version"],
        capture_output=True,
        text=True,
        timeout=20,
        env=_env(),
    )
    assert result.returncode == 0
    assert "underway, version" in result.stdout


# -- migrate ------------------------------------------------------------------------------------


def test_migrate_applies_then_reports_the_schema_current(url: str, tmp_path: Path) -> None:
    first = underway("migrate", "--database", url)
    assert first.returncode == 0, first.stderr
    assert "applied 0001_initial" in first.stdout
    assert (tmp_path / "jobs.db").exists()

    again = underway("migrate", "--app", "cli_app:jobs", "--database", url)
    assert again.returncode == 0, again.stderr
    assert "schema is current" in again.stdout
    assert "applied" not in again.stdout


def test_migrate_without_a_target_is_a_usage_error() -> None:
    assert_one_line_error(underway("migrate"), 2, "give --database URL or --app module:attr")


# -- jobs list / show / retry / cancel ----------------------------------------------------------


@pytest.fixture
def prepared(url: str, client: Jobs) -> dict[str, int]:
    """A database with a completed, a discarded, a scheduled and an available job."""
    ids = {
        "completed": client.workers["cli_app.add"].enqueue_sync({"a": 1, "b": 2}).id,
        "discarded": client.workers["cli_app.explode"].enqueue_sync({"n": 7}).id,
    }

    def finished(node: Jobs) -> bool:
        states = {name: node.get_job_sync(i) for name, i in ids.items()}
        return all(j is not None and j.state.value == name for name, j in states.items())

    async def run_until_finished() -> None:
        async with make_jobs(url) as node:
            while not await asyncio.to_thread(finished, node):
                await asyncio.sleep(0.02)

    asyncio.run(asyncio.wait_for(run_until_finished(), 10))
    ids["scheduled"] = client.workers["cli_app.send"].enqueue_sync({}, schedule_in=3600).id
    ids["available"] = client.workers["cli_app.add"].enqueue_sync({}, queue="elsewhere").id
    return ids


def test_jobs_list_shows_a_table_and_filters(url: str, prepared: dict[str, int]) -> None:
    every = underway("jobs", "list", "--database", url)
    assert every.returncode == 0, every.stderr
    lines = every.stdout.splitlines()
    assert lines[0].split()[:4] == ["ID", "STATE", "QUEUE", "WORKER"]
    rows = {int(line.split()[0]): line.split()[1] for line in lines[1:]}
    assert rows == {i: state for state, i in prepared.items()}
    assert "RuntimeError: boom 7" in every.stdout

    by_state = underway(
        "jobs", "list", "--state", "discarded", "--state", "scheduled", "--database", url
    )
    ids = [int(line.split()[0]) for line in by_state.stdout.splitlines()[1:]]
    assert ids == [prepared["scheduled"], prepared["discarded"]]

    by_queue = underway("jobs", "list", "--queue", "mail", "--database", url)
    assert [line.split()[0] for line in by_queue.stdout.splitlines()[1:]] == [
        str(prepared["scheduled"])
    ]
    by_worker = underway(
        "jobs",
        "list",
        "--worker",
        "cli_app.add",
        "--limit",
        "1",
        "--app",
        "cli_app:jobs",
        "--database",
        url,
    )
    assert [line.split()[0] for line in by_worker.stdout.splitlines()[1:]] == [
        str(prepared["available"])
    ]
    none = underway("jobs", "list", "--queue", "nothing-here", "--database", url)
    assert none.returncode == 0
    assert none.stdout.strip() == "no jobs match"


def test_jobs_show_prints_every_field_and_the_traceback(url: str, prepared: dict[str, int]) -> None:
    result = underway("jobs", "show", str(prepared["discarded"]), "--database", url)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for field in (
        "state: discarded",
        "worker: cli_app.explode",
        "attempt: 1 of 1",
        'args: {"n": 7}',
        "attempted by:",
        "discarded at:",
        "errors: 1",
    ):
        assert field in out
    assert "Traceback (most recent call last)" in out
    assert "RuntimeError: boom 7" in out

    done = underway("jobs", "show", str(prepared["completed"]), "--database", url)
    assert "result: 3" in done.stdout


def test_jobs_retry_and_cancel_change_the_job(
    url: str, client: Jobs, prepared: dict[str, int]
) -> None:
    retried = underway("jobs", "retry", str(prepared["discarded"]), "--database", url)
    assert retried.returncode == 0, retried.stderr
    assert "available again" in retried.stdout
    job = client.get_job_sync(prepared["discarded"])
    assert job is not None
    assert job.state is JobState.AVAILABLE
    assert job.max_attempts == 2

    cancelled = underway("jobs", "cancel", str(prepared["scheduled"]), "--database", url)
    assert cancelled.returncode == 0, cancelled.stderr
    assert "cancelled (was scheduled)" in cancelled.stdout
    assert stored(client, prepared["scheduled"]).state is JobState.CANCELLED

    finished = underway("jobs", "cancel", str(prepared["completed"]), "--database", url)
    assert_one_line_error(finished, 1, "already completed; nothing to cancel")
    assert stored(client, prepared["completed"]).state is JobState.COMPLETED


@pytest.mark.parametrize("command", ["show", "retry", "cancel"])
def test_jobs_commands_on_a_missing_id_fail_clearly(
    url: str, prepared: dict[str, int], command: str
) -> None:
    result = underway("jobs", command, "4242", "--database", url)
    assert_one_line_error(result, 1, "no job with id 4242")


def test_jobs_commands_need_an_existing_database(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.db"
    result = underway("jobs", "list", "--database", f"sqlite:///{missing}")
    assert_one_line_error(result, 1, "no database at")
    assert not missing.exists()
