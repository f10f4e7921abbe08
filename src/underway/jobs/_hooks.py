"""Hooks around enqueueing and running jobs: the way in for instrumentation.

Both lists are empty unless an instrumentation (such as :mod:`underway.otel`) registers a
hook. The enqueue path and the executor test the list and do nothing more while it is
empty. A hook is a callable returning a context manager that is entered before the work
and exited after it, in the task (and the context) that does the work; hooks registered
later are entered later, inside the earlier ones. A hook that raises is logged and
ignored (see :mod:`underway._hooks`): it never fails an enqueue or a job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from underway._hooks import enter_guarded
from underway.jobs.job import Job, JobSpec
from underway.jobs.outcomes import Ack

__all__ = [
    "EnqueueHook",
    "Enqueueing",
    "RunHook",
    "Running",
    "enqueue_hooks",
    "enqueueing",
    "run_hooks",
    "running",
]


@dataclass(slots=True)
class Enqueueing:
    """One insert of jobs, as the enqueue hooks see it.

    Attributes:
        specs: The jobs about to be inserted. A hook may replace the list when it is
            entered (to add to the jobs' meta, for example); the insert uses what the
            last hook left.
        jobs: Set once the insert returned: the jobs inserted, in order (a unique
            duplicate as the existing job). ``None`` when the insert raised.
    """

    specs: list[JobSpec]
    jobs: list[Job[Any]] | None = None


@dataclass(slots=True)
class Running:
    """One run of a job, as the run hooks see it.

    Attributes:
        job: The job claimed (its ``attempt`` is the attempt running).
        node: The node running it.
        outcome: What the worker returned or raised, once it finished (a value, a
            ``Snooze``, ``Cancel`` or ``Error``, or an exception).
        ack: The change to record, once decided.
    """

    job: Job[Any]
    node: str
    outcome: Any = None
    ack: Ack | None = None


EnqueueHook = Callable[[Enqueueing], AbstractContextManager[object]]
RunHook = Callable[[Running], AbstractContextManager[object]]

#: Entered around every insert of jobs (``Jobs.enqueue_many`` and its sync twin, cron).
enqueue_hooks: list[EnqueueHook] = []
#: Entered around every run of a job, on the job's own task: the body runs inside.
run_hooks: list[RunHook] = []


@contextmanager
def enqueueing(insert: Enqueueing) -> Iterator[Enqueueing]:
    """Enter every enqueue hook around the block, the first registered outermost."""
    with ExitStack() as stack:
        enter_guarded(stack, list(enqueue_hooks), insert)
        yield insert


@contextmanager
def running(run: Running) -> Iterator[Running]:
    """Enter every run hook around the block, the first registered outermost."""
    with ExitStack() as stack:
        enter_guarded(stack, list(run_hooks), run)
        yield run
