"""Durable, database-backed jobs (Oban for Python).

Define workers on a :class:`Jobs` app, enqueue jobs (inside your own transaction if you
like), and run a node with ``underway start module:jobs`` or ``async with jobs:``.
"""

from underway.jobs._counters import MinuteCount
from underway.jobs._health import Health, HealthCheck
from underway.jobs._overview import CronInfo, NodeInfo, NodeQueue, QueueInfo
from underway.jobs.app import Jobs, TestingMode
from underway.jobs.config import Pruning
from underway.jobs.cron import Cron
from underway.jobs.job import Job, JobError, JobSpec, JobState
from underway.jobs.outcomes import Cancel, Error, Snooze
from underway.jobs.unique import Unique
from underway.jobs.worker import Worker

__all__ = [
    "Cancel",
    "Cron",
    "CronInfo",
    "Error",
    "Health",
    "HealthCheck",
    "Job",
    "JobError",
    "JobSpec",
    "JobState",
    "Jobs",
    "MinuteCount",
    "NodeInfo",
    "NodeQueue",
    "Pruning",
    "QueueInfo",
    "Snooze",
    "TestingMode",
    "Unique",
    "Worker",
]
