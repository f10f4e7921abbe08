"""``underway demo``: a realistic run that explains itself and checks its own outcome."""

from __future__ import annotations

import asyncio
import io
import os
import pty
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from underway.cli.demo import app as demo_app
from underway.cli.demo import run_demo
from underway.jobs import Jobs, JobState

SCRIPT = Path(sys.executable).with_name("underway")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNDERWAY_")}
    env.update(PYTHONUNBUFFERED="1", COLUMNS="120")
    return env


def _totals(output: str) -> dict[str, int]:
    match = re.search(
        r"(\d+) jobs in [\d.]+s: (\d+) completed, (\d+) cancelled, (\d+) discarded", output
    )
    assert match, output
    total, completed, cancelled, discarded = map(int, match.groups())
    return {"total": total, "completed": completed, "cancelled": cancelled, "discarded": discarded}


@pytest.mark.acceptance
def test_demo_runs_explains_and_matches_the_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    result = subprocess.run(
        [sys.executable, "-m", "underway.cli", "demo", "--fast", "--database", url],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "Traceback" not in out + result.stderr
    assert "\x1b[" not in out  # not a terminal: plain lines, no redraw
    for word in ("completed", "retried", "snoozed", "cancelled", "scheduled", "unique"):
        assert word in out
    assert "Every job ended as expected." in out
    assert re.search(r"\+\s*\d+\.\d+s\s+default: .*\| mail: .*\| imports: ", out), out

    jobs = Jobs(url)
    try:
        stored = jobs.list_jobs_sync(limit=1000)
    finally:
        asyncio.run(jobs.engine.close())
    states = Counter(j.state for j in stored)
    totals = _totals(out)
    assert totals["total"] == len(stored)
    assert totals["completed"] == states[JobState.COMPLETED]
    assert totals["cancelled"] == states[JobState.CANCELLED]
    assert totals["discarded"] == states[JobState.DISCARDED]
    assert sum(totals.values()) - totals["total"] == len(stored)  # nothing left unfinished
    charge = next(j for j in stored if j.worker == "demo.charge_card")
    assert (charge.state, charge.attempt, len(charge.errors)) == (JobState.COMPLETED, 3, 2)
    upload = next(j for j in stored if j.worker == "demo.process_upload")
    assert upload.meta["snoozed"] >= 1
    assert len([j for j in stored if j.worker == "demo.import_file"]) == 6  # duplicate rejected


@pytest.mark.acceptance
def test_demo_on_a_terminal_redraws_a_live_table_and_cleans_up() -> None:
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [str(SCRIPT), "demo", "--fast"],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env=_env(),
        close_fds=True,
    )
    os.close(secondary)
    chunks = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                data = os.read(primary, 65536)
            except OSError:  # the other side closed
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout=10)
    finally:  # a hang or the test's timeout: the demo is killed and reaped all the same
        os.close(primary)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 0
    out = b"".join(chunks).decode()
    assert "A\r\x1b[J" in out  # cursor up, clear: redrawn in place
    assert "queues at +" in out
    assert "Every job ended as expected." in out
    where = re.search(r"database: sqlite:///(\S+) \(a temporary file", out)
    assert where, out
    assert not Path(where.group(1)).exists()  # the temporary database is removed


def test_demo_reports_a_job_that_ends_unexpectedly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(demo_app.EXPECTED, "worker_cancel", ("sync_crm", JobState.COMPLETED, 1))
    out = io.StringIO()
    code = run_demo(database=f"sqlite:///{tmp_path / 'demo.db'}", fast=True, out=out)
    text = out.getvalue()
    assert code == 1
    assert "UNEXPECTED: 1 problem(s)" in text
    assert "(sync_crm) ended cancelled, expected completed" in text
