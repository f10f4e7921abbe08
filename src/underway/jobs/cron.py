"""Cron entries: which worker to enqueue when, in which timezone. Pure: no I/O.

An expression has five fields (minute hour day-of-month month day-of-week) or is one of
the nicknames ``@yearly`` (``@annually``), ``@monthly``, ``@weekly``, ``@daily``
(``@midnight``), ``@hourly`` and ``@reboot`` (once when the cluster's leader starts).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from underway.errors import ConfigError, EnqueueError

if TYPE_CHECKING:
    from underway.jobs.job import JobSpec
    from underway.jobs.worker import Worker

__all__ = ["REBOOT", "Cron", "check_options", "latest_slot"]

REBOOT = "@reboot"
SLOT_WINDOW = 60.0  # a slot missed by more than this (no leader at the time) is skipped
_NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def _expand(expression: str) -> str:
    text = " ".join(expression.split())
    return _NICKNAMES.get(text.lower(), text)


def latest_slot(expression: str, timezone: str, now: float) -> float:
    """The latest time at or before ``now`` that ``expression`` fires, as epoch seconds.

    Args:
        expression: Five fields or a nickname other than ``@reboot``.
        timezone: An IANA timezone name; the fields are read in its local time.
        now: Epoch seconds.
    """
    from cronsim import CronSim

    start = datetime.fromtimestamp(math.floor(now) + 1, ZoneInfo(timezone))
    slot: datetime = next(iter(CronSim(_expand(expression), start, reverse=True)))
    return slot.timestamp()


@dataclass(frozen=True, slots=True)
class Cron:
    """A recurring job: enqueue ``worker`` with ``args`` each time ``expression`` fires.

    Exactly one job is inserted per slot across all nodes (only the leader schedules, and
    each slot is recorded with its job in one transaction). A slot whose minute passed
    with no leader running is skipped, as in Oban; a leader that restarts within the
    slot's minute still inserts it.

    Args:
        expression: Five cron fields or a nickname (see the module docstring).
        worker: The worker to enqueue.
        args: The job's args.
        timezone: IANA name the fields are read in (default ``"UTC"``).
        queue, priority, tags, meta, max_attempts: Override the worker's options.
        name: Identifies the entry's slots (default: worker, expression, timezone and
            args); give one to keep the history of an entry whose args change.
    """

    expression: str
    worker: Worker
    args: Mapping[str, Any] = field(default_factory=dict)
    timezone: str = "UTC"
    queue: str | None = None
    priority: int | None = None
    tags: Iterable[str] | None = None
    meta: Mapping[str, Any] | None = None
    max_attempts: int | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        from cronsim import CronSim, CronSimError

        if not isinstance(self.args, Mapping):
            raise ConfigError(
                f"cron entry for {self.worker.name}: args must be a dict (a JSON object), "
                f"got {type(self.args).__name__} {self.args!r}"
            )
        if not isinstance(self.expression, str) or not self.expression.strip():
            raise ConfigError(
                f"cron expression must be a non-empty string, got {self.expression!r}"
            )
        try:
            zone = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"unknown timezone {self.timezone!r} in cron entry") from None
        if not self.is_reboot:
            try:
                CronSim(_expand(self.expression), datetime.now(zone))
            except CronSimError as exc:
                raise ConfigError(f"invalid cron expression {self.expression!r}: {exc}") from None
        try:  # args and options are validated now, not at the first slot
            self.spec(meta_extra={})
        except EnqueueError as exc:
            raise ConfigError(f"cron entry for {self.worker.name}: {exc}") from None

    @property
    def is_reboot(self) -> bool:
        """Whether this entry fires once when the leader starts."""
        return self.expression.strip().lower() == REBOOT

    @property
    def key(self) -> str:
        """The name the entry's slots are recorded under."""
        if self.name:
            return self.name
        text = json.dumps(dict(self.args), sort_keys=True, separators=(",", ":"), default=str)
        digest = hashlib.sha256(text.encode()).hexdigest()[:12]
        return f"{self.worker.name}|{' '.join(self.expression.split())}|{self.timezone}|{digest}"

    def due(self, now: float) -> float | None:
        """The slot to fire at ``now``: the latest one, if it is less than a minute old."""
        if self.is_reboot:
            return None
        slot = latest_slot(self.expression, self.timezone, now)
        return slot if now - slot < SLOT_WINDOW else None

    def spec(self, *, meta_extra: Mapping[str, Any]) -> JobSpec:
        """The job to insert for one slot (``meta_extra`` is merged into its meta)."""
        options: dict[str, Any] = {"meta": {**(self.meta or {}), **meta_extra}}
        for name in ("queue", "priority", "tags", "max_attempts"):
            value = getattr(self, name)
            if value is not None:
                options[name] = value
        return self.worker.new(dict(self.args), unique=None, **options)


def check_options(options: Mapping[str, Any]) -> None:
    """Reject keyword options that :class:`Cron` does not have.

    Raises:
        ConfigError: An option is unknown; the message names it and lists the known ones.
    """
    known = [f.name for f in fields(Cron) if f.name not in ("expression", "worker")]
    unknown = sorted(set(options) - set(known))
    if unknown:
        names = ", ".join(repr(name) for name in unknown)
        noun = "option" if len(unknown) == 1 else "options"
        raise ConfigError(f"unknown cron {noun} {names} (options: {', '.join(known)})")
