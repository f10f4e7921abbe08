"""The telemetry bus: handlers, spans, logging, and the events a running node emits."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

import underway
from underway import _telemetry as telemetry
from underway.jobs import Job, Jobs, JobState

Event = tuple[str, dict[str, Any], dict[str, Any]]
Attach = Callable[..., tuple[list[Event], object]]


@pytest.fixture
def collect() -> Iterator[Attach]:
    """Attach a recording handler; every handler attached here is detached after the test."""
    tokens: list[object] = []

    def attach(prefix: str = "") -> tuple[list[Event], object]:
        events: list[Event] = []

        def record(
            event: str, measurements: Mapping[str, Any], metadata: Mapping[str, Any]
        ) -> None:
            events.append((event, dict(measurements), dict(metadata)))

        token = underway.attach(record, prefix=prefix)
        tokens.append(token)
        return events, token

    yield attach
    for token in tokens:
        underway.detach(token)


@pytest.fixture
def detach_after() -> Iterator[list[object]]:
    tokens: list[object] = []
    yield tokens
    for token in tokens:
        underway.detach(token)


def names(events: list[Event]) -> list[str]:
    return [e[0] for e in events]


# -- attach / detach --------------------------------------------------------------------


def test_handler_receives_event_measurements_and_metadata(collect: Attach) -> None:
    events, _ = collect()
    telemetry.emit("job.stop", {"duration": 0.5}, {"queue": "mail"})
    assert events == [("job.stop", {"duration": 0.5}, {"queue": "mail"})]


def test_prefix_selects_events(collect: Attach) -> None:
    jobs_only, _ = collect("job.")
    everything, _ = collect()
    for name in ("job.start", "fetch.stop", "job.stop", "jobs.other"):
        telemetry.emit(name, {}, {})
    assert names(jobs_only) == ["job.start", "job.stop"]
    assert names(everything) == ["job.start", "fetch.stop", "job.stop", "jobs.other"]


def test_detach_stops_delivery_and_ignores_unknown_tokens(collect: Attach) -> None:
    events, token = collect()
    telemetry.emit("a.stop", {}, {})
    underway.detach(token)
    underway.detach(token)
    underway.detach(object())
    telemetry.emit("a.stop", {}, {})
    assert names(events) == ["a.stop"]


def test_the_same_handler_attached_twice_gets_each_event_twice(
    detach_after: list[object],
) -> None:
    seen: list[str] = []

    def handler(event: str, measurements: Mapping[str, Any], metadata: Mapping[str, Any]) -> None:
        seen.append(event)

    first = underway.attach(handler)
    detach_after.extend([first, underway.attach(handler)])
    telemetry.emit("x.stop", {}, {})
    assert seen == ["x.stop", "x.stop"]
    underway.detach(first)
    telemetry.emit("y.stop", {}, {})
    assert seen == ["x.stop", "x.stop", "y.stop"]


def test_enabled_reflects_attached_handlers(collect: Attach) -> None:
    before = telemetry.enabled()
    _, token = collect()
    assert telemetry.enabled()
    underway.detach(token)
    assert telemetry.enabled() == before


# -- spans ------------------------------------------------------------------------------


def test_span_emits_start_then_stop_with_duration_and_extra(collect: Attach) -> None:
    events, _ = collect("fetch.")
    before = time.time()
    with telemetry.span("fetch", {"queue": "q"}) as extra:
        time.sleep(0.02)
        extra["count"] = 3
    assert names(events) == ["fetch.start", "fetch.stop"]
    (_, start_m, start_md), (_, stop_m, stop_md) = events
    assert before <= start_m["system_time"] <= time.time()
    assert start_md == stop_md == {"queue": "q"}
    assert stop_m["count"] == 3
    assert 0.02 <= stop_m["duration"] < 5


def test_span_exception_is_reported_and_reraised(collect: Attach) -> None:
    events, _ = collect()
    boom = RuntimeError("disk full")

    def failing_block() -> None:
        with telemetry.span("ack", {"node": "n1"}):
            time.sleep(0.01)
            raise boom

    with pytest.raises(RuntimeError, match="disk full"):
        failing_block()
    assert names(events) == ["ack.start", "ack.exception"]
    measurements, metadata = events[1][1], events[1][2]
    assert measurements["duration"] >= 0.01
    assert metadata == {"node": "n1", "error": boom}


def test_span_exception_carries_what_the_block_recorded(collect: Attach) -> None:
    events, _ = collect("batch.")

    def failing_batch() -> None:
        with telemetry.span("batch", {}) as extra:
            extra["size"] = 7
            raise KeyError("x")

    with pytest.raises(KeyError):
        failing_batch()
    assert names(events) == ["batch.start", "batch.exception"]
    assert events[1][1]["size"] == 7


@pytest.mark.parametrize(
    ("prefix", "wanted"),
    [
        ("", True),
        ("pipeline.", True),
        ("pipeline.message", True),
        ("pipeline.message.stop", True),
        ("pipeline.messages", False),
        ("pipeline.batch", False),
        ("job.", False),
    ],
)
def test_a_span_runs_only_for_handlers_of_its_events(
    collect: Attach, prefix: str, wanted: bool
) -> None:
    events, _ = collect(prefix)
    assert telemetry.wants("pipeline.message") is wanted
    assert bool(telemetry.attached)
    with telemetry.span("pipeline.message", {}):
        pass
    quiet = isinstance(telemetry.span("pipeline.message", {}), type(telemetry._QUIET))
    assert quiet is not wanted
    assert (events != []) is wanted


def test_span_without_handlers_still_runs_the_block() -> None:
    if telemetry.enabled():
        pytest.skip("another handler is attached in this process")
    with telemetry.span("quiet", {}) as extra:
        extra["count"] = 1
    assert extra == {"count": 1}


def test_a_raising_handler_breaks_neither_the_emitter_nor_other_handlers(
    collect: Attach, detach_after: list[object], caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: str, measurements: Mapping[str, Any], metadata: Mapping[str, Any]) -> None:
        raise ValueError("handler bug")

    detach_after.append(underway.attach(broken))
    events, _ = collect()
    with caplog.at_level(logging.ERROR, logger="underway.telemetry"):
        telemetry.emit("job.stop", {}, {})
        with telemetry.span("stage", {}) as extra:
            extra["count"] = 2
    assert names(events) == ["job.stop", "stage.start", "stage.stop"]
    failures = [r for r in caplog.records if r.name == "underway.telemetry"]
    assert len(failures) == 3
    assert all(r.exc_info and isinstance(r.exc_info[1], ValueError) for r in failures)


# -- attach_logging -----------------------------------------------------------------------


def test_attach_logging_writes_one_structured_line_per_event(
    detach_after: list[object], caplog: pytest.LogCaptureFixture
) -> None:
    detach_after.append(underway.attach_logging())
    with caplog.at_level(logging.DEBUG, logger="underway"):
        telemetry.emit("job.start", {"system_time": 1.0}, {"queue": "mail"})
        telemetry.emit("job.stop", {"duration": 0.12345678}, {"queue": "mail", "worker": "w"})
        telemetry.emit("job.exception", {"duration": 1.5}, {"error": KeyError("id")})
    records = [r for r in caplog.records if r.name == "underway"]
    assert [r.levelno for r in records] == [logging.DEBUG, logging.INFO, logging.ERROR]
    stop = records[1]
    assert stop.getMessage() == "job.stop queue=mail worker=w duration=0.123457"
    assert stop.underway == {  # type: ignore[attr-defined]
        "event": "job.stop",
        "queue": "mail",
        "worker": "w",
        "duration": 0.123457,
    }
    assert "error=KeyError: 'id'" in records[2].getMessage()


def test_attach_logging_level_logger_and_prefix(
    detach_after: list[object], caplog: pytest.LogCaptureFixture
) -> None:
    target = logging.getLogger("myapp.jobs")
    detach_after.append(underway.attach_logging(target, level=logging.WARNING, prefix="job."))
    with caplog.at_level(logging.DEBUG, logger="myapp.jobs"):
        telemetry.emit("job.stop", {"duration": 0.1}, {})
        telemetry.emit("fetch.stop", {"duration": 0.1}, {})
    records = [r for r in caplog.records if r.name == "myapp.jobs"]
    assert [(r.levelno, r.getMessage().split()[0]) for r in records] == [
        (logging.WARNING, "job.stop")
    ]


def test_attach_logging_shows_jobs_by_id(
    detach_after: list[object], caplog: pytest.LogCaptureFixture
) -> None:
    detach_after.append(underway.attach_logging())
    job: Job[dict[str, Any]] = Job(
        id=42, state=JobState.EXECUTING, queue="default", worker="w", args={}
    )
    with caplog.at_level(logging.INFO, logger="underway"):
        telemetry.emit("job.stop", {}, {"job": job})
    assert [r.getMessage() for r in caplog.records if r.name == "underway"] == [
        "job.stop job=job#42"
    ]


def test_attach_logging_skips_disabled_levels(
    detach_after: list[object], caplog: pytest.LogCaptureFixture
) -> None:
    detach_after.append(underway.attach_logging())
    with caplog.at_level(logging.INFO, logger="underway"):
        telemetry.emit("job.start", {}, {})
    assert [r for r in caplog.records if r.name == "underway"] == []


# -- a real node --------------------------------------------------------------------------


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def test_a_running_node_emits_job_fetch_and_ack_events(
    tmp_path: Path, collect: Attach
) -> None:
    jobs = Jobs(
        f"sqlite:///{tmp_path / 'jobs.db'}",
        queues={"default": 2},
        poll_interval=0.05,
        stage_interval=0.05,
        heartbeat_interval=0.2,
        rescue_after=5.0,
        shutdown_grace=2.0,
    )

    @jobs.worker
    async def good(job: Job[Any]) -> str:
        return "ok"

    @jobs.worker(max_attempts=3)
    async def bad(job: Job[Any]) -> None:
        raise LookupError("no such row")

    events, _ = collect()
    async with jobs:
        ok = await good.enqueue({"n": 1})
        failed = await bad.enqueue({"n": 2})

        def finished() -> bool:
            a, b = jobs.get_job_sync(ok.id), jobs.get_job_sync(failed.id)
            return (
                a is not None
                and b is not None
                and a.state is JobState.COMPLETED
                and b.state is JobState.RETRYABLE
            )

        await wait_for(finished)

    by_name: dict[str, list[Event]] = {}
    for event in events:
        by_name.setdefault(event[0], []).append(event)

    starts = {e[2]["job"].id: e for e in by_name["job.start"]}
    assert set(starts) == {ok.id, failed.id}
    assert all(e[2]["node"] == jobs.config.name for e in starts.values())

    (stop,) = by_name["job.stop"]
    assert stop[2]["job"].id == ok.id
    assert stop[2]["state"] == "completed"
    assert stop[2]["queue"] == "default"
    assert stop[1]["duration"] >= 0

    (exc,) = by_name["job.exception"]
    assert exc[2]["job"].id == failed.id
    assert exc[2]["state"] == "retryable"
    assert isinstance(exc[2]["error"], LookupError)
    assert exc[1]["duration"] >= 0

    assert len(by_name["fetch.start"]) == len(by_name["fetch.stop"]) >= 1
    assert sum(e[1]["count"] for e in by_name["fetch.stop"]) == 2
    assert all(e[2]["queue"] == "default" for e in by_name["fetch.stop"])
    assert sum(e[1]["count"] for e in by_name["ack.stop"]) == 2
    assert all(e[1]["duration"] >= 0 for e in by_name["ack.stop"])
    assert sum(e[1]["count"] for e in by_name["insert.stop"]) == 2
