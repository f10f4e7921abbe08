"""The README's one-tree example (a jobs node, a pipeline and a server under one supervisor)
runs in a subprocess and stops in order on SIGTERM, or hurried on a second one.

``one_tree_app.py`` is the README's example, character for character (the first test
checks it). The process is synchronised on what it prints and on the database, never on
sleeps, and it is killed and reaped whatever happens.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance._procs import query, wait_for
from underway.jobs import Job, Jobs

pytestmark = pytest.mark.acceptance

ROOT = Path(__file__).resolve().parents[2]
APP = Path(__file__).with_name("one_tree_app.py")
HEADING = "### One tree for a whole application"
START_ORDER = ["jobs", "stats", "pipeline"]

# Runs the example with one more upload, whose scan takes 1,000 s: still in flight when
# the pipeline is asked to stop. Neither the pipeline's drain bound nor the bound of the
# whole stop can end that stop, however long the second signal takes to come: only the
# hurry can.
HURRY_DRIVER = """
import underway.tasks
import one_tree_app as example

example.uploads.push({"name": "archive.zip", "size": 100_000_000_000})
example.pipeline.shutdown_timeout = 86_400.0  # a day
example.run = lambda root, **options: underway.tasks.run(root, shutdown_timeout=None)
example.main()
"""


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split(HEADING, 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


class Example:
    """The example in a subprocess (cwd ``tmp_path``), its output in a file."""

    def __init__(self, tmp_path: Path, argv: list[str]) -> None:
        self.db = tmp_path / "uploads.db"
        self.output_path = tmp_path / "output.txt"
        env = {**os.environ, "PYTHONPATH": str(APP.parent)}
        with self.output_path.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-u", *argv],
                cwd=tmp_path,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def output(self) -> str:
        return self.output_path.read_text()

    def wait_for_output(self, text: str, *, timeout: float = 30.0) -> None:
        def seen() -> bool:
            if text in self.output:
                return True
            assert self.proc.poll() is None, f"exited early:\n{self.output}"
            return False

        wait_for(seen, timeout=timeout, what=repr(text), diagnose=lambda: self.output)

    def signal(self, sig: signal.Signals = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 90.0) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {timeout}s:\n{self.output}") from None

    def reap(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)

    def stop_order(self) -> list[str]:
        return re.findall(r"tasks\.child\.stop supervisor=app child=(\w+)", self.output)

    def acknowledged(self) -> list[str]:
        lines = [line for line in self.output.splitlines() if line.startswith("acknowledged:")]
        assert len(lines) == 1, self.output
        names = lines[0].removeprefix("acknowledged:").strip()
        return names.split(", ") if names else []

    def jobs(self) -> dict[str, tuple[str, int]]:
        """Each job's upload name, with its state and attempt."""
        rows = query(self.db, "SELECT args, state, attempt FROM underway_jobs")
        return {json.loads(args)["name"]: (state, attempt) for args, state, attempt in rows}


@pytest.fixture
def example(tmp_path: Path) -> Iterator[Example]:
    running = Example(tmp_path, [str(APP)])
    try:
        yield running
    finally:
        running.reap()


@pytest.fixture
def hurried_example(tmp_path: Path) -> Iterator[Example]:
    # A 1,000 s rendering job waits in the queue before the node starts.
    enqueue(tmp_path / "uploads.db", {"name": "poster.tiff", "size": 50_000_000_000})
    running = Example(tmp_path, ["-c", HURRY_DRIVER])
    try:
        yield running
    finally:
        running.reap()


def enqueue(db: Path, args: dict[str, Any]) -> None:
    """Enqueue a ``thumbnails.make`` job from this process (as another service would)."""
    client = Jobs(f"sqlite:///{db}", queues={"thumbnails": 2})

    @client.worker(name="thumbnails.make", queue="thumbnails")
    async def make(job: Job[dict[str, Any]]) -> None:
        raise AssertionError("this process runs no node")

    try:
        make.enqueue_sync(args)
    finally:
        asyncio.run(client.stop())


def test_the_app_module_is_the_readme_example() -> None:
    assert APP.read_text() == readme_example()


def test_sigterm_stops_the_three_parts_in_reverse_order_losing_nothing(example: Example) -> None:
    # Both uploads handled: the pipeline runs, so the node and the server before it do.
    example.wait_for_output("cat.png: thumbnail queued")
    example.wait_for_output("dog.png: thumbnail queued")

    example.signal()
    assert example.wait() == 0, example.output

    output = example.output
    assert example.stop_order() == list(reversed(START_ORDER)), output
    # Every message acknowledged, once; the server stopped after the pipeline had drained.
    assert sorted(example.acknowledged()) == ["cat.png", "dog.png"], output
    assert "stats: 2 upload(s)" in output
    # The jobs enqueued before the signal ran, or wait in their queue: none is lost.
    jobs = example.jobs()
    assert set(jobs) == {"cat.png", "dog.png"}
    for state, attempt in jobs.values():
        assert (state, attempt) in {("completed", 1), ("available", 0)}, jobs
    assert "Traceback" not in output


def test_a_second_sigterm_hurries_all_three_parts(hurried_example: Example) -> None:
    example = hurried_example
    example.wait_for_output("cat.png: thumbnail queued")
    example.wait_for_output("dog.png: thumbnail queued")
    wait_for(
        lambda: example.jobs().get("poster.tiff") == ("executing", 1),
        timeout=30,
        what="the long job to run",
        diagnose=lambda: example.output,
    )

    example.signal()
    # The pipeline drains first and waits for archive.zip's scan: hurry it meanwhile.
    example.wait_for_output("received SIGTERM; stopping supervisor 'app'")
    assert example.stop_order() == [], example.output
    example.signal()
    assert example.wait() == 0, example.output

    output = example.output
    assert "received SIGTERM again; hurrying the stop of 'app'" in output
    assert example.stop_order() == list(reversed(START_ORDER)), output
    # The pipeline: the scan in flight was cut short and its message left for the broker
    # to deliver again (with those acknowledged together with it), none acknowledged twice.
    assert "uploads: stop hurried" in output
    acknowledged = example.acknowledged()
    assert len(acknowledged) == len(set(acknowledged))
    assert set(acknowledged) <= {"cat.png", "dog.png"}, output
    # The server: cancelled at once, so no terminate (a graceful stop prints the count).
    assert "stats:" not in output
    # The node: the long coroutine job was cancelled and handed back, not completed.
    assert example.jobs()["poster.tiff"] == ("available", 0)
    assert "Traceback" not in output
