"""The application the acceptance tests run in node and inserter subprocesses.

Settings come from environment variables (see :class:`Settings`), so the same module serves
the test process (to enqueue and inspect) and every subprocess (to run a node or race an
insert). Run it as ``python -m tests.acceptance.nodeapp node`` or ``... race``.

Every execution of :func:`record` appends a ``start`` line when it begins and a ``finish``
line when its body returns to a file of its own process, opened with ``O_APPEND`` and written
with one ``write(2)`` per line, so the log survives a ``kill -9`` of the process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Self

from underway.jobs import Job, Jobs, Unique

RECORD = "acceptance.record"
UNIQUE = "acceptance.unique"
UNIQUE_BY_ACCOUNT = "acceptance.unique_by_account"

_KINDS: dict[str, type] = {"float": float, "int": int, "str": str}


class EnvSettings:
    """What a dataclass of settings needs to travel to a subprocess as ``<prefix><NAME>``."""

    env_prefix: ClassVar[str]
    node: str
    queues: str

    def to_env(self) -> dict[str, str]:
        """The settings as environment variables."""
        names = (f.name for f in fields(self))  # type: ignore[arg-type]
        return {f"{self.env_prefix}{name.upper()}": str(getattr(self, name)) for name in names}

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        """Read the settings back from environment variables."""
        values: dict[str, Any] = {}
        for f in fields(cls):  # type: ignore[arg-type]
            raw = env.get(f"{cls.env_prefix}{f.name.upper()}")
            if raw is not None:
                values[f.name] = _KINDS[str(f.type)](raw)
        return cls(**values)

    def queue_limits(self) -> dict[str, int]:
        """``queues`` (``"a=3,b=1"``) as a mapping."""
        pairs = (item.split("=") for item in self.queues.split(",") if item)
        return {name: int(limit) for name, limit in pairs}


@dataclass(frozen=True)
class Settings(EnvSettings):
    """How a node or an inserter is set up; each field travels as ``UW_<NAME>``."""

    env_prefix: ClassVar[str] = "UW_"

    db: str
    log_dir: str
    node: str = "node"
    queues: str = "default=10"
    heartbeat: float = 0.2
    rescue_after: float = 1.5
    grace: float = 5.0
    poll: float = 0.05
    extra_workers: str = ""


class ExecutionLog:
    """Appends one line per event to ``<log_dir>/<node>.log``, one ``write(2)`` each."""

    def __init__(self, log_dir: str, node: str) -> None:
        self.path = Path(log_dir) / f"{node}.log"
        self.node = node
        self._fd: int | None = None

    def write(self, kind: str, job: Job[Any]) -> None:
        """Record ``kind`` (``start`` or ``finish``) for ``job`` with the time."""
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        line = f"{kind} {job.id} {job.attempt} {self.node} {time.time():.6f}\n"
        os.write(self._fd, line.encode())


def duration(args: Mapping[str, Any], node: str) -> float:
    """``args["seconds"]``: one duration, or one per node name with ``"*"`` for the others."""
    seconds: float | dict[str, float] = args.get("seconds", 0.0)
    if isinstance(seconds, dict):
        return float(seconds[node] if node in seconds else seconds.get("*", 0.0))
    return float(seconds)


def build(settings: Settings) -> Jobs:
    """The app with its workers, configured by ``settings``."""
    jobs = Jobs(
        f"sqlite:///{settings.db}",
        queues=settings.queue_limits(),
        node_name=settings.node,
        poll_interval=settings.poll,
        stage_interval=settings.poll,
        heartbeat_interval=settings.heartbeat,
        rescue_after=settings.rescue_after,
        leader_ttl=1.0,
        shutdown_grace=settings.grace,
    )
    log = ExecutionLog(settings.log_dir, settings.node)

    async def record(job: Job[dict[str, Any]]) -> None:
        log.write("start", job)
        await asyncio.sleep(duration(job.args, settings.node))
        log.write("finish", job)

    for name in (RECORD, *filter(None, settings.extra_workers.split(","))):
        jobs.worker(name=name)(record)

    @jobs.worker(name=UNIQUE, unique=Unique(period=300))
    async def unique(job: Job[dict[str, Any]]) -> None:
        log.write("start", job)

    @jobs.worker(name=UNIQUE_BY_ACCOUNT, unique=Unique(keys=["account"], period=300))
    async def unique_by_account(job: Job[dict[str, Any]]) -> None:
        log.write("start", job)

    return jobs


@contextmanager
def stopping(jobs: Jobs) -> Iterator[Jobs]:
    """Yield ``jobs``, an app that runs no node, and close it on exit."""
    try:
        yield jobs
    finally:
        asyncio.run(jobs.stop())


def client(settings: Settings) -> AbstractContextManager[Jobs]:
    """An app that enqueues and inspects without running a node; closed on exit."""
    return stopping(build(settings))


def log_to_stderr(node: str) -> None:
    """Log at INFO to stderr, each line naming ``node``."""
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format=f"%(asctime)s {node} %(levelname)s %(name)s: %(message)s",
    )


def _wait_for_file(path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout}s")
        time.sleep(0.001)


def race(settings: Settings, barrier: Path, index: int) -> dict[str, Any]:
    """Insert the same unique jobs as the other racers, all released by one barrier file.

    The process announces ``<barrier>.ready.<index>`` once its connection is open, waits for
    ``barrier`` to exist, then inserts. Returns ``[id, conflict]`` pairs for each insert.
    """
    with client(settings) as jobs:
        unique, keyed = jobs.workers[UNIQUE], jobs.workers[UNIQUE_BY_ACCOUNT]
        plain = jobs.workers[RECORD]
        jobs.counts_sync()  # connect before the start signal
        Path(f"{barrier}.ready.{index}").touch()
        _wait_for_file(barrier, timeout=60.0)
        single = unique.enqueue_sync({"report": "daily"})
        bulk = jobs.enqueue_many_sync(
            [
                unique.new({"report": "weekly"}),
                plain.new({"racer": index}),
                unique.new({"report": "weekly"}),
            ]
        )
        keyed_single = keyed.enqueue_sync({"account": 7, "nonce": index})
        keyed_bulk = jobs.enqueue_many_sync(
            [
                keyed.new({"account": 8, "nonce": index}),
                keyed.new({"account": 8, "nonce": 100 + index}),
            ]
        )
    return {
        "single": [single.id, single.conflict],
        "bulk": [[j.id, j.conflict] for j in bulk],
        "keyed_single": [keyed_single.id, keyed_single.conflict],
        "keyed_bulk": [[j.id, j.conflict] for j in keyed_bulk],
    }


def main(argv: list[str] | None = None) -> int:
    """``node`` runs a node until SIGTERM/SIGINT; ``race BARRIER INDEX`` races inserts."""
    parser = argparse.ArgumentParser(prog="nodeapp")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("node")
    racer = sub.add_parser("race")
    racer.add_argument("barrier", type=Path)
    racer.add_argument("index", type=int)
    options = parser.parse_args(argv)
    settings = Settings.from_env(os.environ)
    log_to_stderr(settings.node)
    if options.command == "node":
        build(settings).run()
    else:
        print(json.dumps(race(settings, options.barrier, options.index)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
