"""A small Jobs app that the command-line tests run with ``underway start cli_app:jobs``.

The database given here is never opened by the tests: they pass ``--database``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from underway.jobs import Jobs
from underway.jobs.job import Job


def make_jobs(database: str) -> Jobs:
    """The app, on ``database``, with short intervals so tests run fast."""
    jobs = Jobs(
        database,
        queues={"default": 2, "mail": 3},
        poll_interval=0.05,
        stage_interval=0.05,
        heartbeat_interval=0.5,
        rescue_after=5.0,
        leader_ttl=1.0,
        shutdown_grace=10.0,
    )

    @jobs.worker(name="cli_app.add", record_result=True)
    async def add(job: Job[Any]) -> int:
        await asyncio.sleep(float(job.args.get("sleep", 0)))
        return int(job.args["a"]) + int(job.args["b"])

    @jobs.worker(name="cli_app.send", queue="mail")
    def send(job: Job[Any]) -> None:
        time.sleep(float(job.args.get("sleep", 0)))

    @jobs.worker(name="cli_app.explode", max_attempts=1)
    async def explode(job: Job[Any]) -> None:
        raise RuntimeError(f"boom {job.args['n']}")

    return jobs


jobs = make_jobs("sqlite:///cli-app-unused.db")
not_jobs = {"this": "is a dict"}
testing_jobs = Jobs("sqlite:///cli-app-unused.db", testing="manual")
no_workers = Jobs("sqlite:///cli-app-unused.db", poll_interval=0.05, stage_interval=0.05)
