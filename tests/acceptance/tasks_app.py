"""A supervised program for the SIGTERM tests: ``python -m tests.acceptance.tasks_app LOG``.

It runs, under ``underway.tasks.run``: a ``db`` child that takes a moment to be ready, a
``cache`` server, a task supervisor and a ``web`` child, in that order, and writes
``start <id>`` / ``stop <id>`` lines to LOG. With ``--stubborn`` a last child ignores
cancellation, to show that a child that would not stop is reported and the process still
exits within its bound.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from underway.tasks import ChildSpec, Ready, Server, Supervisor, TaskSupervisor, run


class Record:
    """Appends one line per event to the log file, flushed at once."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, line: str) -> None:
        with self.path.open("a") as f:
            f.write(f"{line} {time.time():.3f}\n")


def build(record: Record, *, stubborn: bool) -> Supervisor:
    async def db(*, ready: Ready) -> None:
        await asyncio.sleep(0.2)  # connecting
        record("start db")
        ready()
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0.1)  # closing connections
            record("stop db")

    class Cache(Server):
        async def init(self) -> None:
            record("start cache")

        async def handle_call(self, request: Any, caller: Any) -> Any:
            return request

        async def terminate(self, reason: Any) -> None:
            record(f"stop cache {reason}")

    async def web() -> None:
        record("start web")
        try:
            await asyncio.sleep(3600)
        finally:
            record("stop web")

    async def never_stops() -> None:
        record("start stubborn")
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                record("ignored stubborn")

    children = [
        ChildSpec("db", db, ready=True),
        Cache(name="cache").child_spec(),
        TaskSupervisor(name="jobs").child_spec(),
        ChildSpec("web", web),
    ]
    if stubborn:
        children.append(ChildSpec("stubborn", never_stops, shutdown=0.3))
    return Supervisor(children, name="app", cancel_timeout=0.3)


def main() -> None:
    """Parse the arguments and run the program until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser()
    parser.add_argument("log", type=Path)
    parser.add_argument("--stubborn", action="store_true")
    parser.add_argument("--shutdown-timeout", type=float, default=10.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    record = Record(args.log)
    run(build(record, stubborn=args.stubborn), shutdown_timeout=args.shutdown_timeout)
    record("exited")


if __name__ == "__main__":
    main()
