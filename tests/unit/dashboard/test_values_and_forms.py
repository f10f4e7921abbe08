"""The dashboard's pure parts: how values look, and how the jobs list's fields are read."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from underway.dashboard._forms import job_id, job_query
from underway.dashboard._pages import BadRequest
from underway.dashboard._security import route_path
from underway.dashboard._values import ago, clip, compact, duration, is_clipped, pretty, when


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, ""),
        (0.25, "250ms"),
        (3.21, "3.2s"),
        (42.9, "42s"),
        (65, "1m 05s"),
        (3 * 3600 + 12 * 60 + 5, "3h 12m"),
        (2 * 86400 + 4 * 3600, "2d 4h"),
    ],
)
def test_durations_use_their_largest_unit(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text


def test_times_and_how_long_ago() -> None:
    moment = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    assert when(moment) == "2024-05-01 12:00:00"
    assert when(None) == ""
    assert ago(moment, now=moment.timestamp() + 90) == "1m 30s ago"
    assert ago(moment, now=moment.timestamp() - 7200) == "in 2h 00m"
    assert ago(moment, now=moment.timestamp() + 0.2) == "now"
    assert ago(None) == ""


def test_values_as_json_and_clipped() -> None:
    assert compact({"a": [1, "é"]}) == '{"a": [1, "é"]}'
    assert pretty({"b": 1, "a": 2}) == '{\n  "a": 2,\n  "b": 1\n}'
    moment = datetime(2024, 5, 1, tzinfo=UTC)
    assert compact({"at": moment}) == '{"at": "2024-05-01T00:00:00+00:00"}'
    assert compact({"x": object()}).startswith('{"x": "<object object at')
    assert clip("abcdef", 4) == "abc…"
    assert clip("abcd", 4) == "abcd"
    assert is_clipped("abcde", 4)
    assert not is_clipped("abcd", 4)


def test_the_fields_of_the_jobs_list_become_filters() -> None:
    query = job_query(
        [
            ("state", "completed, discarded"),
            ("state", "cancelled"),
            ("queue", ""),
            ("tags", "a,b"),
            ("inserted_after", "2024-05-01T12:00"),
            ("args", '{"user": 7}'),
            ("id", "12"),
            ("before", "99"),
        ]
    )
    assert query.filters == {
        "state": ["completed", "discarded", "cancelled"],
        "tags": ["a", "b"],
        "id": 12,
        "inserted_after": datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
        "args": {"user": 7},
    }
    assert query.before == 99
    assert query.form["state"] == "completed,discarded,cancelled"
    assert "before" not in query.query_string
    assert query.query_string.startswith("state=completed%2Cdiscarded%2Ccancelled&tags=a%2Cb")


def test_a_page_cursor_is_refused_where_there_are_no_pages() -> None:
    with pytest.raises(BadRequest, match="unknown filter 'before'"):
        job_query([("before", "3")], page=False)
    assert job_query([("do", "x")], ignore=["do"]).filters == {}


@pytest.mark.parametrize("text", ["0", "-1", "1.5", "abc", "", str(2**63)])
def test_job_ids_are_whole_numbers_in_range(text: str) -> None:
    with pytest.raises(BadRequest, match="is not a job id"):
        job_id(text)
    assert job_id(str(2**63 - 1)) == 2**63 - 1


@pytest.mark.parametrize(
    ("path", "root", "inside"),
    [
        ("/jobs", "", "/jobs"),
        ("/ops/jobs", "/ops", "/jobs"),
        ("/ops", "/ops", "/"),
        ("/opsy/jobs", "/ops", "/opsy/jobs"),  # not under the prefix
        ("/jobs", "/ops", "/jobs"),  # a server that strips the prefix itself
    ],
)
def test_the_path_inside_the_dashboard(path: str, root: str, inside: str) -> None:
    assert route_path({"path": path, "root_path": root}) == inside
