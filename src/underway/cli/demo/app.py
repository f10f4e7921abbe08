"""The demo's application: three queues, a handful of workers, and what each job should do.

Every worker stands for an everyday chore (mail, card payments, file imports) and shows one
behaviour of the queue: plain success, a sync worker in a thread, failure then success on
retry, snoozing, cancelling, discarding after the last attempt, a timeout, a scheduled run
and a unique duplicate. Each enqueued job gets a :class:`Story`: its expected end.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from dataclasses import dataclass
from typing import Any

from underway.jobs.app import Jobs
from underway.jobs.job import Job, JobState
from underway.jobs.outcomes import Cancel, Snooze
from underway.jobs.unique import Unique

__all__ = ["QUEUES", "DemoApp", "Pace", "Story"]

QUEUES = {"default": 4, "mail": 8, "imports": 2}


@dataclass(frozen=True, slots=True)
class Pace:
    """How long the demo's waits are: ``scale`` times the normal length."""

    scale: float = 1.0

    def __call__(self, seconds: float) -> float:
        """``seconds`` at this pace."""
        return seconds * self.scale


@dataclass(frozen=True, slots=True)
class Story:
    """One job the demo enqueued, what kind of job it is and how it must end."""

    job_id: int
    kind: str
    label: str
    expect: JobState
    attempts: int


# kind -> (short worker label, expected final state, expected attempts)
EXPECTED: dict[str, tuple[str, JobState, int]] = {
    "email": ("send_email", JobState.COMPLETED, 1),
    "import": ("import_file", JobState.COMPLETED, 1),
    "flaky": ("charge_card", JobState.COMPLETED, 3),
    "snooze": ("process_upload", JobState.COMPLETED, 1),
    "worker_cancel": ("sync_crm", JobState.CANCELLED, 1),
    "scheduled": ("send_reminder", JobState.COMPLETED, 1),
    "operator_cancel": ("nightly_report", JobState.CANCELLED, 0),
    "discard": ("resize_image", JobState.DISCARDED, 2),
    "timeout": ("render_pdf", JobState.DISCARDED, 1),
}


def story(job: Job[Any], kind: str) -> Story:
    """The story of ``job``, enqueued as a job of ``kind``."""
    label, state, attempts = EXPECTED[kind]
    return Story(job.id, kind, label, state, attempts)


class DemoApp:
    """The demo's :class:`Jobs` app on ``database``, with its workers registered."""

    def __init__(self, database: str, pace: Pace) -> None:
        self.pace = pace
        self.rand = random.Random(7)
        self.batch = secrets.token_hex(4)  # unique keys differ from run to run
        self.jobs = Jobs(
            database,
            queues=QUEUES,
            node_name="demo-node",
            poll_interval=0.25,
            stage_interval=0.1,
            heartbeat_interval=1.0,
            rescue_after=10.0,
            shutdown_grace=2.0,
            prune=None,
        )
        self._register()

    def _register(self) -> None:
        jobs, pace, rand = self.jobs, self.pace, self.rand

        @jobs.worker(name="demo.send_email", queue="mail")
        async def send_email(job: Job[Any]) -> None:
            await asyncio.sleep(pace(rand.uniform(0.1, 0.6)))

        @jobs.worker(
            name="demo.import_file", queue="imports", unique=Unique(keys=["batch", "file_id"])
        )
        def import_file(job: Job[Any]) -> int:
            time.sleep(pace(rand.uniform(0.4, 0.9)))  # a plain def runs in a thread
            return int(job.args["rows"])

        @jobs.worker(name="demo.charge_card", backoff=lambda job: pace(1.5) * job.attempt)
        async def charge_card(job: Job[Any]) -> None:
            await asyncio.sleep(pace(0.2))
            if job.attempt < 3:
                raise ConnectionError("payment gateway timed out")

        @jobs.worker(name="demo.process_upload")
        async def process_upload(job: Job[Any]) -> Snooze | None:
            if time.time() < job.args["ready_at"]:
                return Snooze(pace(0.8))
            await asyncio.sleep(pace(0.3))
            return None

        @jobs.worker(name="demo.sync_crm")
        async def sync_crm(job: Job[Any]) -> Cancel:
            await asyncio.sleep(pace(0.1))
            return Cancel("the customer deleted their account")

        @jobs.worker(name="demo.send_reminder", queue="mail")
        async def send_reminder(job: Job[Any]) -> None:
            await asyncio.sleep(pace(0.2))

        @jobs.worker(name="demo.nightly_report")
        async def nightly_report(job: Job[Any]) -> None:
            await asyncio.sleep(pace(0.2))

        @jobs.worker(name="demo.resize_image", max_attempts=2, backoff=lambda job: pace(0.6))
        async def resize_image(job: Job[Any]) -> None:
            await asyncio.sleep(pace(0.1))
            raise ValueError(f"corrupt image header in {job.args['image']}")

        @jobs.worker(name="demo.render_pdf", max_attempts=1, timeout=pace(0.5))
        async def render_pdf(job: Job[Any]) -> None:
            await asyncio.sleep(30)

        self.workers = {
            w.name.removeprefix("demo."): w
            for w in (
                send_email,
                import_file,
                charge_card,
                process_upload,
                sync_crm,
                send_reminder,
                nightly_report,
                resize_image,
                render_pdf,
            )
        }

    async def first_wave(self) -> list[Story]:
        """Everything enqueued at the start, in one statement."""
        w, pace = self.workers, self.pace
        plan: list[tuple[str, Any]] = [
            *(("email", w["send_email"].new({"to": f"user{i}@example.com"})) for i in range(16)),
            *(
                (
                    "import",
                    w["import_file"].new({"batch": self.batch, "file_id": i, "rows": 100 * i}),
                )
                for i in range(1, 7)
            ),
            ("flaky", w["charge_card"].new({"order": 1042, "cents": 2599})),
            (
                "snooze",
                w["process_upload"].new(
                    {"upload": "scan.pdf", "ready_at": time.time() + pace(3.5)}
                ),
            ),
            ("worker_cancel", w["sync_crm"].new({"customer": 77})),
            (
                "scheduled",
                w["send_reminder"].new({"to": "late@example.com"}, schedule_in=pace(7.5)),
            ),
            ("operator_cancel", w["nightly_report"].new({"day": "today"}, schedule_in=3600)),
            ("discard", w["resize_image"].new({"image": "cat.png"})),
            ("timeout", w["render_pdf"].new({"invoice": 3})),
        ]
        inserted = await self.jobs.enqueue_many([spec for _, spec in plan])
        return [story(job, kind) for job, (kind, _) in zip(inserted, plan, strict=True)]

    async def duplicate_import(self) -> Job[Any]:
        """Enqueue file 3 again: the unique worker returns the existing job as a conflict."""
        args = {"batch": self.batch, "file_id": 3, "rows": 300}
        return await self.workers["import_file"].enqueue(args)

    async def second_wave(self) -> list[Story]:
        """More mail arriving while the first jobs still run."""
        specs = [self.workers["send_email"].new({"to": f"news{i}@example.com"}) for i in range(8)]
        return [story(job, "email") for job in await self.jobs.enqueue_many(specs)]
