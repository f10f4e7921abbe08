"""SIGTERM / SIGINT to a supervised program: an ordered, bounded shutdown, in a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.acceptance

ROOT = Path(__file__).resolve().parents[2]


class App:
    """``tests.acceptance.tasks_app`` in a subprocess, output in files, killed at the end."""

    def __init__(self, tmp: Path, *args: str) -> None:
        self.log = tmp / "events.log"
        self.err = tmp / "stderr.txt"
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, "PYTHONPATH": path}
        with self.err.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.acceptance.tasks_app", str(self.log), *args],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    def lines(self) -> list[str]:
        if not self.log.exists():
            return []
        return [" ".join(line.split()[:-1]) for line in self.log.read_text().splitlines()]

    def wait_for(self, line: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while line not in self.lines():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no {line!r} (exit {self.proc.poll()}):\n{self.stderr()}")
            time.sleep(0.02)

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def apps(tmp_path: Path) -> Iterator[list[App]]:
    started: list[App] = []
    yield started
    for app in started:
        app.kill()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_children_in_reverse_start_order(
    apps: list[App], tmp_path: Path, sig: signal.Signals
) -> None:
    app = App(tmp_path)
    apps.append(app)
    app.wait_for("start web")
    app.proc.send_signal(sig)
    assert app.proc.wait(timeout=20) == 0, app.stderr()
    assert app.lines() == [
        "start db",
        "start cache",
        "start web",
        "stop web",
        "stop cache shutdown",
        "stop db",
        "exited",
    ], app.stderr()
    assert f"received {sig.name}; stopping supervisor 'app'" in app.stderr()


def test_a_child_that_would_not_stop_is_reported_and_the_process_still_exits(
    apps: list[App], tmp_path: Path
) -> None:
    app = App(tmp_path, "--stubborn")
    apps.append(app)
    app.wait_for("start stubborn")
    signalled = time.monotonic()
    app.proc.send_signal(signal.SIGTERM)
    assert app.proc.wait(timeout=20) == 0, app.stderr()
    took = time.monotonic() - signalled
    lines = app.lines()
    # the stubborn child is asked, then cancelled; it ignores both, and the others stop in order
    assert lines[lines.index("start stubborn") + 1 :] == [
        "ignored stubborn",
        "ignored stubborn",
        "stop web",
        "stop cache shutdown",
        "stop db",
        "ignored stubborn",  # the last cancellation, at exit
        "exited",
    ], app.stderr()
    assert "child 'stubborn' would not stop even when cancelled" in app.stderr()
    assert "exiting with 1 task(s) that would not stop" in app.stderr()
    assert took < 15, f"the shutdown took {took:.1f}s"


def test_the_shutdown_bound_cuts_a_slow_shutdown_short(apps: list[App], tmp_path: Path) -> None:
    app = App(tmp_path, "--stubborn", "--shutdown-timeout", "0.1")
    apps.append(app)
    app.wait_for("start stubborn")
    app.proc.send_signal(signal.SIGTERM)
    assert app.proc.wait(timeout=20) == 0, app.stderr()
    lines = app.lines()
    assert lines[-1] == "exited"
    # past the bound every child still running was cancelled at once: the others still ran
    # their cleanup, but the stubborn child's ask period was cut short
    assert {"stop web", "stop db"} <= set(lines), app.stderr()
    assert "supervisor 'app' would not stop" not in app.stderr()
