"""The demo's closing report: what happened to each job, totals, and anything unexpected."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from underway.cli._console import table
from underway.cli.demo.app import Story
from underway.jobs.job import Job, JobState

__all__ = ["Outcome", "note", "problems", "summary_lines", "totals_lines"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """A planned job and how it ended (``job`` is ``None`` if it vanished)."""

    story: Story
    job: Job[Any] | None


def _first_error(job: Job[Any]) -> str:
    return job.errors[0].error if job.errors else "no error recorded"


def _delay(job: Job[Any]) -> tuple[float, float]:
    """Seconds from insert to the planned time, and from insert to the start."""
    inserted, planned, started = job.inserted_at, job.scheduled_at, job.attempted_at
    if inserted is None or planned is None:
        return 0.0, 0.0
    ran = (started - inserted).total_seconds() if started else 0.0
    return (planned - inserted).total_seconds(), ran


def note(outcome: Outcome, duplicate_of: int | None = None) -> str:
    """One line saying what happened to the job, in words."""
    job, kind = outcome.job, outcome.story.kind
    if job is None:
        return "the job disappeared from the database"
    if kind == "email":
        return "sent on the first attempt"
    if kind == "import":
        text = "imported by a sync worker (in a thread)"
        if job.id == duplicate_of:
            text += "; a duplicate enqueue conflicted (unique)"
        return text
    if kind == "flaky":
        return f"failed {len(job.errors)}x ({_first_error(job)}), retried, then completed"
    if kind == "snooze":
        return f"snoozed {job.meta.get('snoozed', 0)}x until the upload was ready, then completed"
    if kind == "worker_cancel":
        return "its worker returned Cancel (the customer deleted their account)"
    if kind == "scheduled":
        planned, ran = _delay(job)
        return f"scheduled for +{planned:.1f}s, started at +{ran:.1f}s"
    if kind == "operator_cancel":
        return "scheduled an hour ahead, cancelled by the operator before it ran"
    if kind == "discard":
        return f"failed all {job.attempt} attempts ({_first_error(job)}), discarded"
    if kind == "timeout":
        return f"timed out ({_first_error(job)}), discarded"
    return ""


def problems(outcome: Outcome) -> list[str]:
    """What differs from the job's expected end (empty when it ended as planned)."""
    story, job = outcome.story, outcome.job
    name = f"job #{story.job_id} ({story.label})"
    if job is None:
        return [f"{name} is missing from the database"]
    found = []
    if job.state is not story.expect:
        found.append(f"{name} ended {job.state.value}, expected {story.expect.value}")
    if job.attempt != story.attempts:
        found.append(f"{name} used {job.attempt} attempt(s), expected {story.attempts}")
    if story.kind == "snooze" and not job.meta.get("snoozed"):
        found.append(f"{name} never snoozed")
    if story.kind == "scheduled":
        planned, ran = _delay(job)
        if ran + 0.05 < planned:
            found.append(f"{name} started at +{ran:.2f}s, before its time +{planned:.2f}s")
    return found


def summary_lines(outcomes: Sequence[Outcome], duplicate_of: int | None) -> list[str]:
    """A table with one row per job; runs of alike jobs share a row (``3-18``)."""
    rows: list[list[object]] = []
    for outcome in sorted(outcomes, key=lambda o: o.story.job_id):
        job, story = outcome.job, outcome.story
        state = job.state.value if job else "missing"
        attempt = f"{job.attempt}/{job.max_attempts}" if job else "-"
        queue = job.queue if job else "-"
        cells: list[object] = [story.label, queue, state, attempt, note(outcome, duplicate_of)]
        if rows and rows[-1][1:] == cells and _next_id(rows[-1][0]) == story.job_id:
            rows[-1][0] = f"{str(rows[-1][0]).split('-')[0]}-{story.job_id}"
        else:
            rows.append([story.job_id, *cells])
    return table(["ID", "WORKER", "QUEUE", "STATE", "ATTEMPTS", "NOTE"], rows, align=">")


def _next_id(cell: object) -> int:
    return int(str(cell).split("-")[-1]) + 1


def totals_lines(
    outcomes: Sequence[Outcome], *, duplicate_of: int | None, elapsed: float
) -> list[str]:
    """Totals by final state, and how many jobs were retried, snoozed, scheduled, unique."""
    jobs = [o.job for o in outcomes if o.job is not None]
    states = Counter(j.state for j in jobs)
    by_kind = _by_kind(outcomes)
    retried = [j for j in jobs if j.errors and j.attempt > 1]
    snoozes = sum(int(j.meta.get("snoozed", 0)) for j in jobs)
    snoozed = sum(1 for j in jobs if j.meta.get("snoozed"))
    in_threads = len(by_kind.get("import", []))
    order = (JobState.COMPLETED, JobState.CANCELLED, JobState.DISCARDED)
    finals = ", ".join(f"{states[s]} {s.value}" for s in order)
    others = sum(n for s, n in states.items() if s not in order)
    if others:
        finals += f", {others} not finished"
    lines = [
        f"{len(outcomes)} jobs in {elapsed:.1f}s: {finals}",
        f"  retried:   {len(retried)} job(s) failed and ran again ({_states_of(retried)})",
        f"  snoozed:   {snoozed} job(s), {snoozes} snooze(s) in all, attempts not counted",
        f"  scheduled: {_scheduled(by_kind)}",
        f"  cancelled: {len(by_kind.get('worker_cancel', []))} by its worker, "
        f"{len(by_kind.get('operator_cancel', []))} by the operator",
        f"  unique:    {_unique(duplicate_of)}",
        f"  workers:   {in_threads} job(s) ran in threads (sync worker), "
        f"{len(jobs) - in_threads} on the event loop (async workers)",
    ]
    return lines


def _by_kind(outcomes: Sequence[Outcome]) -> Mapping[str, list[Job[Any]]]:
    out: dict[str, list[Job[Any]]] = {}
    for o in outcomes:
        if o.job is not None:
            out.setdefault(o.story.kind, []).append(o.job)
    return out


def _states_of(jobs: Sequence[Job[Any]]) -> str:
    counts = Counter(j.state.value for j in jobs)
    return ", ".join(f"{n} then {state}" for state, n in sorted(counts.items())) or "none"


def _scheduled(by_kind: Mapping[str, list[Job[Any]]]) -> str:
    ran = len(by_kind.get("scheduled", []))
    cancelled = len(by_kind.get("operator_cancel", []))
    return f"{ran + cancelled} job(s) for later: {ran} ran on time, {cancelled} cancelled first"


def _unique(duplicate_of: int | None) -> str:
    if duplicate_of is None:
        return "the duplicate enqueue was not detected"
    return f"1 duplicate enqueue conflicted with job #{duplicate_of}; nothing was inserted"
