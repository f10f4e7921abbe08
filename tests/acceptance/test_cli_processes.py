"""``underway start --processes N``: several node processes under one command."""

from __future__ import annotations

import logging
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
from contextlib import closing
from pathlib import Path

import pytest

from tests.acceptance.test_cli import Node, stored, wait_until
from underway.cli import _processes as _cli_processes
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
    node = _pool(tmp_path, url, nodes)
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


def test_ctrl_c_in_a_terminal_stops_the_children_gracefully(
    tmp_path: Path, url: str, client: Jobs, nodes: list[Node]
) -> None:
    long = client.workers["cli_app.add"].enqueue_sync({"a": 1, "b": 2, "sleep": 3}).id
    # The parent leads a process group, as a shell's foreground job does.
    node = _pool(tmp_path, url, nodes, new_session=True)
    # Both nodes running (a child still importing has no handler yet), one with the job.
    wait_until(lambda: _node_names(url) >= {"pool-0", "pool-1"}, "two node processes", timeout=20)
    wait_until(lambda: stored(client, long).state is JobState.EXECUTING, "the job", timeout=20)
    os.killpg(node.proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
    assert node.proc.wait(timeout=30) == 0, node.log

    job = stored(client, long)
    assert (job.state, job.attempt, job.result) == (JobState.COMPLETED, 1, 3), node.log
    log = node.log
    assert log.count("received SIGINT; stopping") == 2, log  # each child once, from the parent
    assert "hurrying the stop" not in log
    assert "handing" not in log


def test_children_stop_gracefully_when_the_parent_is_killed(
    tmp_path: Path, url: str, client: Jobs, nodes: list[Node]
) -> None:
    long = client.workers["cli_app.add"].enqueue_sync({"a": 2, "b": 2, "sleep": 2}).id
    node = _pool(tmp_path, url, nodes, new_session=True)
    wait_until(lambda: _node_names(url) >= {"pool-0", "pool-1"}, "two node processes", timeout=20)
    wait_until(lambda: stored(client, long).state is JobState.EXECUTING, "the job", timeout=20)
    children = [_pid_of(node, "pool-0"), _pid_of(node, "pool-1")]
    try:
        node.proc.kill()  # SIGKILL: the parent cannot forward anything
        node.proc.wait(timeout=10)
        wait_until(
            lambda: not any(_running(pid) for pid in children),
            "the orphaned children to stop",
            timeout=30,
        )
    finally:
        for pid in children:  # orphans: init reaps them once they are gone
            if _running(pid):
                os.kill(pid, signal.SIGKILL)

    job = stored(client, long)
    assert (job.state, job.attempt, job.result) == (JobState.COMPLETED, 1, 4), node.log
    assert _node_names(url) == set(), "both stopped cleanly and removed their heartbeat"
    log = node.log
    assert log.count("the parent process is gone; stopping") == 2, log
    assert log.count("stopped") >= 2, log


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


# -- readiness, restarts and exit statuses -------------------------------------------------------


def _pid_of(node: Node, name: str) -> int:
    """The pid of the parent's child that runs node ``name`` (read from /proc)."""
    parent = node.proc.pid
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    for pid in children:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if name.encode() in argv:
            return int(pid)
    raise AssertionError(f"no child runs {name}:\n{node.log}")


def _running(pid: int) -> bool:
    """Whether ``pid`` is alive (neither gone nor a zombie waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _executing_on(url: str, name: str) -> set[int]:
    path = url.removeprefix("sqlite:///")
    with closing(sqlite3.connect(path, timeout=10)) as conn:
        rows = conn.execute(
            "SELECT id FROM underway_jobs WHERE state = 'executing' AND attempted_by = ?", (name,)
        )
        return {row[0] for row in rows}


def test_a_child_killed_soon_after_it_started_is_restarted_under_a_fresh_name(
    tmp_path: Path, url: str, client: Jobs, nodes: list[Node]
) -> None:
    add = client.workers["cli_app.add"]
    ids = [
        j.id
        for j in client.enqueue_many_sync(add.new({"a": i, "b": 0, "sleep": 2}) for i in range(16))
    ]
    node = _pool(tmp_path, url, nodes)
    # Killed as soon as it runs jobs: well inside the first seconds after it reported
    # ready (which is what the parent used to mistake for a failed start).
    wait_until(lambda: bool(_executing_on(url, "pool-0")), "pool-0 running jobs", timeout=30)
    pid = _pid_of(node, "pool-0")
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not _running(pid), "pool-0 dead")
    held = _executing_on(url, "pool-0")  # frozen until the lifeline rescues them
    assert held, "pool-0 died running jobs"

    wait_until(
        lambda: node.proc.poll() is not None or "pool-0-r1" in _node_names(url),
        "the restarted child",
        timeout=30,
    )
    assert node.proc.poll() is None, f"the parent gave up:\n{node.log}"
    wait_until(
        lambda: all(client.get_job_sync(i).state is JobState.COMPLETED for i in ids),  # type: ignore[union-attr]
        "every job completed, the killed child's rescued",
        timeout=60,
    )
    assert node.proc.poll() is None, node.log
    for job_id in held:  # the dead incarnation's jobs went through the lifeline
        job = client.get_job_sync(job_id)
        assert job is not None
        assert job.attempt == 2, job
        assert job.attempted_by != "pool-0", job
    assert node.stop() == 0, node.log
    log = node.log
    assert re.search(
        r"node process pool-0 \(pid \d+\) killed by SIGKILL after it was ready; "
        r"starting pool-0-r1 in 1s",
        log,
    ), log
    assert "node pool-0-r1 started" in log
    assert "claimed but never received" not in log
    assert "failed to start" not in log


def _broken_app(tmp_path: Path, how: str) -> Path:
    """An app that imports in the parent and breaks in every node process (``how``)."""
    (tmp_path / "broken_app.py").write_text(
        textwrap.dedent(
            f"""
            import os, signal, time
            from underway.jobs import Jobs

            with open(os.environ["IMPORTS_LOG"], "a") as log:
                log.write("x")
            if os.path.getsize(os.environ["IMPORTS_LOG"]) > 1:  # not the parent's import
                how = {how!r}
                if how == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                if how == "slow":
                    time.sleep(6)  # longer than any fixed start-up allowance
                raise RuntimeError("this app cannot be imported in a node process")
            jobs = Jobs(os.environ["APP_DATABASE"])
            """
        )
    )
    return tmp_path / "imports.log"


@pytest.mark.parametrize(
    ("how", "status", "what"),
    [
        ("raise", 2, "exited with status 2"),
        ("slow", 2, "exited with status 2"),
        ("kill", 128 + signal.SIGKILL, "killed by SIGKILL"),
    ],
)
def test_children_that_cannot_start_stop_the_parent_with_their_status(
    tmp_path: Path, url: str, how: str, status: int, what: str
) -> None:
    imports = _broken_app(tmp_path, how)
    env = {**os.environ, "IMPORTS_LOG": str(imports), "APP_DATABASE": url}
    env = {k: v for k, v in env.items() if k != "UNDERWAY_READY_FD"}
    with (tmp_path / "parent.log").open("w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "underway.cli",
                "start",
                "broken_app:jobs",
                "--processes",
                "2",
                "--node-name",
                "broken",
            ],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    log = (tmp_path / "parent.log").read_text()
    assert code == status, log
    assert re.search(
        rf"node process broken-[01] \(pid \d+\) failed to start: {what} before it was ready; "
        "stopping the other node processes",
        log,
    ), log
    if how != "kill":
        assert "cannot be imported in a node process" in log
    # The parent and one or two children (the other may be stopped before it imports it),
    # and no restarted child.
    assert imports.read_text() in ("xx", "xxx")


_FAKE_NODE = """
import os, sys
if "-r" not in sys.argv[1]:
    os.write(int(os.environ["UNDERWAY_READY_FD"]), b"1")  # the first child starts...
    sys.exit(3)  # ...and dies
sys.exit(4)  # its replacements never start
"""


def test_replacements_that_keep_failing_to_start_stop_the_group_after_backoff(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_cli_processes, "_FIRST_DELAY", 0.01)
    caplog.set_level(logging.INFO, logger="underway.cli")
    code = _cli_processes.run_processes(
        1, "pool", lambda name: [sys.executable, "-c", _FAKE_NODE, name]
    )
    assert code == 4
    spawned = re.findall(r"spawned node process (\S+)", caplog.text)
    assert spawned == ["pool-0", *(f"pool-0-r{g}" for g in range(1, 6))]
    log = caplog.text
    assert re.search(
        r"pool-0 \(pid \d+\) exited with status 3 after it was ready; starting pool-0-r1 in 0.01s",
        log,
    )
    assert re.search(
        r"pool-0-r2 \(pid \d+\) failed to start \(exited with status 4 before it was ready\); "
        r"starting pool-0-r3 in 0.02s",
        log,
    )
    assert re.search(
        r"pool-0-r5 \(pid \d+\) failed to start: exited with status 4 before it was ready; stop",
        log,
    )


def _pool(tmp_path: Path, url: str, nodes: list[Node], *, new_session: bool = False) -> Node:
    """``underway start --processes 2 --node-name pool`` on ``url``, kept in ``nodes``."""
    node = Node(
        tmp_path,
        *("--database", url, "--processes", "2", "--node-name", "pool"),
        *("--stats-interval", "0"),
        new_session=new_session,
    )
    nodes.append(node)
    return node
