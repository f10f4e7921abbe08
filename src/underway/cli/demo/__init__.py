"""``underway demo``: a short, realistic session of durable jobs on a temporary SQLite file.

It starts a node with three queues, enqueues jobs that succeed, fail and retry, snooze,
cancel, time out, wait for their scheduled time or collide as unique duplicates, shows the
queues live while they run, and ends with what happened to every job. The exit code is 0
only if every job ended as planned.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TextIO

from underway import _telemetry as telemetry
from underway.cli._console import LiveRegion, counts_line, counts_table
from underway.cli.demo.app import QUEUES, DemoApp, Pace, Story
from underway.cli.demo.report import Outcome, problems, summary_lines, totals_lines
from underway.jobs.job import FINISHED_STATES, Job, JobState

__all__ = ["run_demo"]

DEADLINE = 25.0
_WAITING = [s for s in JobState if s not in FINISHED_STATES]


def run_demo(*, database: str | None = None, fast: bool = False, out: TextIO) -> int:
    """Run the demo, writing to ``out``; return the exit code (0: all went as planned).

    Args:
        database: Keep the jobs in this database; by default a temporary SQLite file that
            is deleted afterwards.
        fast: Shorten every wait (about 3 seconds in all instead of 8).
        out: Where to write; a live table is redrawn in place when it is a terminal.
    """
    pace = Pace(0.35 if fast else 1.0)
    with _database(database) as (url, temporary):
        demo = _Demo(url, pace, LiveRegion(out), temporary=temporary)
        return asyncio.run(demo.run())


@contextmanager
def _database(url: str | None) -> Iterator[tuple[str, bool]]:
    if url is not None:
        yield url, False
        return
    with tempfile.TemporaryDirectory(prefix="underway-demo-") as tmp:
        yield f"sqlite:///{tmp}/demo.db", True


class _Demo:
    """One run of the demo: the timeline of enqueues, the live view and the report."""

    def __init__(self, url: str, pace: Pace, live: LiveRegion, *, temporary: bool) -> None:
        self.app = DemoApp(url, pace)
        self.pace = pace
        self.live = live
        self.temporary = temporary
        self.stories: dict[int, Story] = {}
        self.duplicate_of: int | None = None
        self.t0 = time.monotonic()

    # -- output -----------------------------------------------------------------------------

    def say(self, text: str) -> None:
        self.live.print(f"  +{time.monotonic() - self.t0:5.2f}s  {text}")

    def _intro(self) -> None:
        where = " (a temporary file, no server)" if self.temporary else ""
        queues = ", ".join(f"{q} (limit {n})" for q, n in QUEUES.items())
        for line in (
            "underway demo: durable jobs on SQLite",
            f"  database: {self.app.jobs.database}{where}",
            f"  queues:   {queues}",
            "",
        ):
            self.live.print(line)

    def _on_event(self, event: str, _m: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        job = meta.get("job")
        story = self.stories.get(job.id) if isinstance(job, Job) else None
        if story is None or not isinstance(job, Job):
            return
        state = meta.get("state")
        tag = f"#{job.id} {story.label}"
        if event == "job.exception" and state == JobState.RETRYABLE:
            self.say(f"{tag} failed on attempt {job.attempt} ({meta.get('error')}); will retry")
        elif event == "job.exception" and state == JobState.DISCARDED:
            self.say(f"{tag} failed on attempt {job.attempt} ({meta.get('error')}); discarded")
        elif event == "job.stop" and state == JobState.SCHEDULED:
            self.say(f"{tag} snoozed: the upload is not ready yet")
        elif event == "job.stop" and state == JobState.CANCELLED:
            self.say(f"{tag} cancelled by its worker")
        elif event == "job.start" and story.kind == "scheduled":
            self.say(f"{tag} started: its scheduled time has come")
        elif event == "job.stop" and state == JobState.COMPLETED and job.attempt > 1:
            self.say(f"{tag} completed on attempt {job.attempt}")
        elif event == "job.stop" and state == JobState.COMPLETED and story.kind == "snooze":
            self.say(f"{tag} completed: the upload was ready")

    # -- the run ----------------------------------------------------------------------------

    async def run(self) -> int:
        self._intro()
        token = telemetry.attach(self._on_event, prefix="job.")
        try:
            async with self.app.jobs:
                self.t0 = time.monotonic()
                timeline = asyncio.create_task(self._timeline(), name="underway.demo.timeline")
                try:
                    await self._watch(timeline)
                finally:
                    timeline.cancel()
                elapsed = time.monotonic() - self.t0
                outcomes = await asyncio.to_thread(self._outcomes)
                counts = await asyncio.to_thread(self.app.jobs.counts_sync)
        finally:
            telemetry.detach(token)
        return self._report(outcomes, counts, elapsed)

    async def _timeline(self) -> None:
        pace = self.pace
        self._add(await self.app.first_wave())
        self.say(f"enqueued {len(self.stories)} jobs in one statement")
        await self._at(pace(0.3))
        dup = await self.app.duplicate_import()
        self.duplicate_of = dup.id if dup.conflict else None
        verdict = f"conflicts with #{dup.id}; nothing inserted" if dup.conflict else "was inserted"
        self.say(f"enqueue import_file for file 3 again: unique, {verdict}")
        await self._at(pace(1.5))
        report = next(s for s in self.stories.values() if s.kind == "operator_cancel")
        await self.app.jobs.cancel_job(report.job_id)
        self.say(f"operator cancels #{report.job_id} nightly_report (due in an hour)")
        await self._at(pace(3.0))
        wave = await self.app.second_wave()
        self._add(wave)
        self.say(f"{len(wave)} more emails arrive while the first jobs run")

    def _add(self, stories: list[Story]) -> None:
        self.stories.update((s.job_id, s) for s in stories)

    async def _at(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, self.t0 + seconds - time.monotonic()))

    async def _watch(self, timeline: asyncio.Task[None]) -> None:
        """Redraw progress until the timeline is done and every job has finished."""
        last_line = time.monotonic()
        while time.monotonic() - self.t0 < DEADLINE:
            counts = await asyncio.to_thread(self.app.jobs.counts_sync)
            now = time.monotonic()
            if self.live.tty:
                self.live.draw(self._table(counts))
            elif now - last_line >= 1.0:
                last_line = now
                self.live.print(f"  +{now - self.t0:5.2f}s  {counts_line(counts, QUEUES)}")
            if timeline.done() and not await asyncio.to_thread(self._waiting):
                timeline.result()
                return
            await asyncio.sleep(0.1 if self.live.tty else 0.2)
        self.say(f"gave up waiting after {DEADLINE:.0f}s")

    def _table(self, counts: Mapping[tuple[str, JobState], int]) -> list[str]:
        head = f"  queues at +{time.monotonic() - self.t0:.1f}s"
        return ["", head, *("  " + line for line in counts_table(counts, QUEUES))]

    def _waiting(self) -> bool:
        found = self.app.jobs.list_jobs_sync(state=_WAITING, limit=10_000)
        return any(job.id in self.stories for job in found)

    def _outcomes(self) -> list[Outcome]:
        get = self.app.jobs.get_job_sync
        return [Outcome(story, get(job_id)) for job_id, story in sorted(self.stories.items())]

    # -- the report -------------------------------------------------------------------------

    def _report(
        self, outcomes: list[Outcome], counts: Mapping[tuple[str, JobState], int], elapsed: float
    ) -> int:
        self.live.close()
        out = self.live.print
        out("")
        out("Queues at the end:")
        for line in counts_table(counts, QUEUES):
            out("  " + line)
        out("")
        out("What happened to each job:")
        for line in summary_lines(outcomes, self.duplicate_of):
            out("  " + line)
        out("")
        for line in totals_lines(outcomes, duplicate_of=self.duplicate_of, elapsed=elapsed):
            out(line)
        found = [p for o in outcomes for p in problems(o)]
        if self.duplicate_of is None:
            found.append("the duplicate import was inserted instead of conflicting")
        out("")
        if found:
            out(f"UNEXPECTED: {len(found)} problem(s):")
            for problem in found:
                out(f"  - {problem}")
            return 1
        out("Every job ended as expected.")
        if not self.temporary:
            out(f"Look at them with: underway jobs list --database {self.app.jobs.database}")
        return 0
