"""``Jobs.run`` in a process of its own: a failed stop ends it non-zero, even with a thread left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
WAIT = 20.0

APP = textwrap.dedent(
    """
    import sys, time
    from underway.errors import DatabaseError
    from underway.jobs import Jobs

    jobs = Jobs(f"sqlite:///{sys.argv[1]}", queues={"default": 1}, poll_interval=0.05,
                shutdown_grace=0.2)
    close = jobs.engine.close

    async def close_badly():
        await close()
        raise DatabaseError("disk I/O error while closing")

    jobs.engine.close = close_badly

    @jobs.worker(name="slow")
    def slow(job):
        print("started", flush=True)
        time.sleep(60)

    slow.enqueue_sync({})
    jobs.run()
    """
)


def _run_and_stop(tmp_path: Path) -> tuple[int, str]:
    app = tmp_path / "app.py"
    app.write_text(APP)
    out = tmp_path / "out.txt"
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, str(app), str(tmp_path / "jobs.db")],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + WAIT
        while "started" not in out.read_text():
            assert proc.poll() is None, out.read_text()
            assert time.monotonic() < deadline, "the job did not start"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(timeout=WAIT)  # not the 60 s of the job's thread
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return status, out.read_text()


def test_a_failed_stop_with_a_thread_left_running_exits_at_once_with_status_1(
    tmp_path: Path,
) -> None:
    status, output = _run_and_stop(tmp_path)
    assert status == 1, output
    assert "disk I/O error while closing" in output
