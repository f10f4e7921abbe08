"""The jobs list's filters as they come from a query string or a form: read, checked, and
turned into the filters of ``Jobs.list_jobs`` and the bulk actions (whose own checks,
:func:`underway.jobs._bulk.job_filter`, have the last word).

Every problem is a :class:`~underway.dashboard._pages.BadRequest` naming the field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from underway.dashboard._pages import BadRequest
from underway.errors import ConfigError
from underway.jobs._bulk import job_filter

__all__ = [
    "FILTER_FIELDS",
    "JobQuery",
    "is_whole",
    "job_id",
    "job_query",
    "parse_query_string",
]

# Several values each (repeated, or separated by commas in one field).
_MANY = ("state", "queue", "worker", "tags")
_TIMES = ("inserted_after", "inserted_before", "finished_after", "finished_before")
_JSON = ("args", "meta")
FILTER_FIELDS = (*_MANY, "node", "id", *_TIMES, *_JSON)
_MAX_ID = 2**63 - 1
_MAX_DIGITS = len(str(_MAX_ID))


@dataclass(frozen=True)
class JobQuery:
    """The jobs list's filters and page.

    Attributes:
        filters: Checked keyword filters for ``list_jobs`` and the bulk actions.
        form: The fields as given (strings), to fill the form and build links.
        before: The page's cursor: only jobs with a smaller id (``None``: the newest).
    """

    filters: dict[str, Any]
    form: dict[str, str]
    before: int | None = None

    @property
    def query_string(self) -> str:
        """The filters as a query string (without the page)."""
        return urlencode([(k, v) for k, v in self.form.items() if v])


def parse_query_string(text: str) -> list[tuple[str, str]]:
    """A query string's pairs, blanks kept (they count as not given)."""
    return parse_qsl(text, keep_blank_values=True)


def job_query(
    pairs: Iterable[tuple[str, str]], *, ignore: Iterable[str] = (), page: bool = True
) -> JobQuery:
    """Read the filters (and, with ``page``, the ``before`` cursor) from ``pairs``.

    Args:
        pairs: The query string's or form's fields.
        ignore: Other fields the caller reads itself.
        page: Whether ``before`` may be given.

    Raises:
        BadRequest: An unknown field, a value of the wrong form, or a filter refused.
    """
    known = set(FILTER_FIELDS) | ({"before"} if page else set())
    skip = set(ignore)
    values: dict[str, list[str]] = {}
    for key, value in pairs:
        if key in skip:
            continue
        if key not in known:
            raise BadRequest(f"unknown filter {key!r}; the filters are {', '.join(sorted(known))}")
        value = value.strip()
        if value:
            values.setdefault(key, []).append(value)
    filters: dict[str, Any] = {}
    form: dict[str, str] = {}
    for key in FILTER_FIELDS:
        given = values.get(key)
        if not given:
            continue
        if key in _MANY:
            items = [i.strip() for v in given for i in v.split(",") if i.strip()]
            filters[key] = items
            form[key] = ",".join(items)
            continue
        text = _one(key, given)
        form[key] = text
        filters[key] = _field(key, text)
    before = _before(values["before"]) if "before" in values else None
    try:
        job_filter(filters)
    except ConfigError as exc:
        raise BadRequest(str(exc)) from None
    except RecursionError:
        raise BadRequest("args or meta is nested too deeply") from None
    return JobQuery(filters, form, before)


def job_id(text: str) -> int:
    """A job id from a path or form field.

    Raises:
        BadRequest: ``text`` is not a whole number from 1 to 2**63-1.
    """
    if not is_whole(text) or not 0 < int(text) <= _MAX_ID:
        raise BadRequest(f"{text!r} is not a job id (a whole number > 0)")
    return int(text)


def is_whole(text: str, digits: int = _MAX_DIGITS) -> bool:
    """Whether ``text`` is ASCII digits only, at most ``digits`` of them (what ``int``
    reads as it is; ``str.isdigit`` also accepts ``²``, which ``int`` refuses, and ``int``
    refuses more than 4300 digits)."""
    return 0 < len(text) <= digits and text.isascii() and text.isdigit()


def _one(key: str, given: list[str]) -> str:
    if len(given) > 1:
        raise BadRequest(f"{key} is given {len(given)} times; give it once")
    return given[0]


def _field(key: str, text: str) -> Any:
    if key == "id":
        return job_id(text)
    if key in _TIMES:
        return _time(key, text)
    if key in _JSON:
        return _object(key, text)
    return text


def _before(given: list[str]) -> int:
    text = _one("before", given)
    if not is_whole(text) or not 0 < int(text) <= _MAX_ID:
        raise BadRequest(f"before must be a job id (a whole number > 0), got {text!r}")
    return int(text)


def _time(key: str, text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(
            f"{key}: {text!r} is not a date and time (such as 2025-01-31T17:45; UTC unless "
            "it gives an offset such as +02:00)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _object(key: str, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise BadRequest(f"{key} is not valid JSON ({exc})") from None
    except RecursionError:
        raise BadRequest(f"{key} is nested too deeply") from None
    if not isinstance(value, dict):
        raise BadRequest(f'{key} must be a JSON object such as {{"user_id": 7}}, got {text!r}')
    return value
