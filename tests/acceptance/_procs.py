"""Helpers for process-level tests: start node processes, wait on conditions, kill them.

Every process started through :class:`Processes` is killed when its ``with`` block ends,
so a failing test leaves nothing running. Output goes to files in the test's directory
(never to pipes that could fill up) and is shown when a wait times out.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Generic, TypeVar

from tests.acceptance.nodeapp import EnvSettings, Settings, client

ROOT = Path(__file__).resolve().parents[2]
MODULE = "tests.acceptance.nodeapp"


def wait_for(
    condition: Callable[[], Any],
    *,
    timeout: float,
    what: str,
    interval: float = 0.02,
    diagnose: Callable[[], str] | None = None,
) -> Any:
    """Poll ``condition`` until it returns something truthy, and return that.

    Raises:
        AssertionError: ``timeout`` seconds passed first; the message names ``what`` and
            adds ``diagnose()`` (for example the nodes' output).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = f"\n{diagnose()}" if diagnose else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{extra}")
        time.sleep(interval)


def kill9(proc: subprocess.Popen[bytes]) -> None:
    """Send SIGKILL and reap the process."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def query(db: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Read from the jobs database with a fresh connection (busy timeout 10 s)."""
    with closing(sqlite3.connect(db, timeout=10.0)) as conn:
        return conn.execute(sql, params).fetchall()


def state_counts(db: Path) -> Counter[str]:
    """Jobs per state."""
    return Counter(dict(query(db, "SELECT state, COUNT(*) FROM underway_jobs GROUP BY state")))


def node_alive(db: Path, node: str) -> bool:
    """Whether ``node`` has a heartbeat row (written before it claims any job)."""
    try:
        return bool(query(db, "SELECT 1 FROM underway_nodes WHERE name = ?", (node,)))
    except sqlite3.OperationalError:  # the schema is not there yet
        return False


@dataclass(frozen=True)
class Event:
    """One line of an execution log."""

    kind: str
    job_id: int
    attempt: int
    node: str
    at: float


def read_events(log_dir: Path) -> list[Event]:
    """Every execution-log line of every process, in time order."""
    events = []
    for path in sorted(log_dir.glob("*.log")):
        for line in path.read_text().splitlines():
            kind, job_id, attempt, node, at = line.split()
            events.append(Event(kind, int(job_id), int(attempt), node, float(at)))
    return sorted(events, key=lambda e: e.at)


S = TypeVar("S", bound=EnvSettings)


class NodeProcesses(Generic[S]):
    """Runs ``python -m <module>`` processes for one test and kills any left at the end.

    Args:
        base: Settings shared by every process.
        workdir: Where each process's stdout/stderr files go.
    """

    module: ClassVar[str]
    node_args: ClassVar[tuple[str, ...]] = ()
    poll_interval: ClassVar[float] = 0.02

    def __init__(self, base: S, workdir: Path) -> None:
        self.base = base
        self.workdir = workdir
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for _, proc in self.procs:
            if proc.poll() is None:
                kill9(proc)

    def spawn(self, label: str, args: Sequence[str], settings: S) -> subprocess.Popen[bytes]:
        """Run ``python -m <module> *args`` with ``settings`` in its env."""
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, **settings.to_env(), "PYTHONPATH": path}
        env.pop("PYTEST_CURRENT_TEST", None)
        with (
            open(self.workdir / f"{label}.out", "wb") as out,
            open(self.workdir / f"{label}.err", "wb") as err,
        ):
            proc = subprocess.Popen(
                [sys.executable, "-m", self.module, *args],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        self.procs.append((label, proc))
        return proc

    def alive(self, node: str) -> bool:
        """Whether ``node`` has a heartbeat row (written before it claims any job)."""
        raise NotImplementedError

    def start_node(
        self, name: str, *, wait: bool = True, **changes: Any
    ) -> subprocess.Popen[bytes]:
        """Start a node named ``name``; with ``wait``, return once it heartbeats."""
        settings = replace(self.base, node=name, **changes)  # type: ignore[type-var]
        proc = self.spawn(name, self.node_args, settings)
        if wait:
            self.wait_for(
                lambda: proc.poll() is not None or self.alive(name),
                timeout=20,
                what=f"node {name} to start",
            )
            assert proc.poll() is None, f"node {name} exited early:\n{self.output()}"
        return proc

    def stop(self, proc: subprocess.Popen[bytes], *, timeout: float = 20.0) -> int:
        """SIGTERM ``proc`` and return its exit code."""
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=timeout)

    def output(self, suffix: str = ".err", tail: int = 3000) -> str:
        """The tail of every process's output files, for failure messages."""
        parts = []
        for label, proc in self.procs:
            text = (self.workdir / f"{label}{suffix}").read_text(errors="replace")
            parts.append(f"--- {label} (exit {proc.poll()}) ---\n{text[-tail:]}")
        return "\n".join(parts)

    def wait_for(
        self,
        condition: Callable[[], Any],
        *,
        timeout: float,
        what: str,
        interval: float | None = None,
    ) -> Any:
        """:func:`wait_for` that shows the processes' output on timeout."""
        every = self.poll_interval if interval is None else interval
        return wait_for(condition, timeout=timeout, what=what, interval=every, diagnose=self.output)


class Processes(NodeProcesses[Settings]):
    """Starts node and helper processes of :mod:`tests.acceptance.nodeapp` for one test.

    Args:
        base: Settings shared by every node (database and log directory included).
        workdir: Where each process's stdout/stderr files go.
    """

    module = MODULE
    node_args = ("node",)

    def __init__(self, base: Settings, workdir: Path) -> None:
        super().__init__(base, workdir)
        self.db = Path(base.db)
        self.log_dir = Path(base.log_dir)

    def __enter__(self) -> Processes:
        with client(self.base) as jobs:  # the schema exists before any process opens the file
            jobs.migrate_sync()
        return self

    def alive(self, node: str) -> bool:
        """Whether ``node`` has a heartbeat row (written before it claims any job)."""
        return node_alive(self.db, node)

    def events(self) -> list[Event]:
        """The execution log of every process so far."""
        return read_events(self.log_dir)


def started(events: Sequence[Event], job_id: int) -> list[Event]:
    """The ``start`` events of one job."""
    return [e for e in events if e.kind == "start" and e.job_id == job_id]


def finished(events: Sequence[Event], job_id: int) -> list[Event]:
    """The ``finish`` events of one job."""
    return [e for e in events if e.kind == "finish" and e.job_id == job_id]


def settings_for(tmp_path: Path, **changes: Any) -> Settings:
    """Settings for one test: a database and a log directory in ``tmp_path``."""
    log_dir = tmp_path / "executions"
    log_dir.mkdir(exist_ok=True)
    return replace(Settings(db=str(tmp_path / "jobs.db"), log_dir=str(log_dir)), **changes)


def processes(tmp_path: Path, **changes: Any) -> Iterator[Processes]:
    """A fixture body: :class:`Processes` for ``tmp_path``, torn down after the test."""
    with Processes(settings_for(tmp_path, **changes), tmp_path) as procs:
        yield procs
