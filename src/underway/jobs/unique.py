"""Unique jobs: which fields make two jobs "the same", for how long, in which states."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from underway.errors import ConfigError
from underway.jobs.job import JobState

__all__ = ["DEFAULT_STATES", "Unique"]

Field = Literal["worker", "queue", "args", "meta"]
_FIELDS: tuple[Field, ...] = ("worker", "queue", "args", "meta")
DEFAULT_STATES: tuple[JobState, ...] = (
    JobState.SCHEDULED,
    JobState.AVAILABLE,
    JobState.EXECUTING,
    JobState.RETRYABLE,
    JobState.COMPLETED,
)


@dataclass(frozen=True, slots=True, init=False)
class Unique:
    """Options that make a worker's jobs unique.

    A new job conflicts with an existing one when the chosen ``fields`` are equal (with
    ``keys``, only those keys of args and meta are compared), the existing job is in one
    of ``states``, and it was inserted less than ``period`` seconds ago. A conflicting
    enqueue inserts nothing and returns the existing job with ``conflict=True``.

    The check is enforced by a unique index, so it holds under concurrent and bulk inserts.

    Args:
        period: Seconds a job blocks duplicates, or ``"forever"``. Default 60.
        fields: Which of ``worker``, ``queue``, ``args``, ``meta`` to compare.
        keys: Compare only these keys of args (and of meta when ``meta`` is a field).
        states: The states in which a job blocks duplicates. Default: every state but
            ``cancelled`` and ``discarded``.
    """

    period: float | None
    fields: tuple[Field, ...]
    keys: tuple[str, ...]
    states: frozenset[JobState]

    def __init__(
        self,
        *,
        period: float | Literal["forever"] = 60.0,
        fields: Iterable[Field] = ("worker", "queue", "args"),
        keys: Iterable[str] = (),
        states: Iterable[JobState | str] = DEFAULT_STATES,
    ) -> None:
        if period == "forever":
            normal_period: float | None = None
        elif isinstance(period, int | float) and not isinstance(period, bool) and period > 0:
            normal_period = float(period)
        else:
            raise ConfigError(f"unique period must be seconds > 0 or 'forever', got {period!r}")
        field_tuple = tuple(dict.fromkeys(fields))
        bad = [f for f in field_tuple if f not in _FIELDS]
        if bad or not field_tuple:
            raise ConfigError(
                f"unique fields must be a non-empty subset of {list(_FIELDS)}, got {list(fields)}"
            )
        key_tuple = tuple(keys)
        if key_tuple and "args" not in field_tuple and "meta" not in field_tuple:
            raise ConfigError("unique keys compare args or meta: add 'args' or 'meta' to fields")
        if any(not isinstance(k, str) or not k for k in key_tuple):
            raise ConfigError(f"unique keys must be non-empty strings, got {key_tuple!r}")
        try:
            state_set = frozenset(JobState(s) for s in states)
        except ValueError as exc:
            raise ConfigError(f"unique states: {exc}") from None
        if not state_set:
            raise ConfigError("unique states must not be empty")
        object.__setattr__(self, "period", normal_period)
        object.__setattr__(self, "fields", field_tuple)
        object.__setattr__(self, "keys", key_tuple)
        object.__setattr__(self, "states", state_set)

    @property
    def state_mask(self) -> int:
        """The states as a bit mask (see :attr:`JobState.bit`)."""
        mask = 0
        for state in self.states:
            mask |= state.bit
        return mask

    def key(
        self, *, worker: str, queue: str, args: Mapping[str, Any], meta: Mapping[str, Any]
    ) -> str:
        """The key two jobs share exactly when they are duplicates under these options."""
        parts: dict[str, Any] = {}
        for name in self.fields:
            if name == "worker":
                parts["worker"] = worker
            elif name == "queue":
                parts["queue"] = queue
            else:
                source = args if name == "args" else meta
                if self.keys:
                    parts[name] = {k: source.get(k) for k in self.keys}
                else:
                    parts[name] = source
        text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()
