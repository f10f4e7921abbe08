"""OpenTelemetry spans of jobs: enqueue to execution on another node, in one trace."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import SpanKind, StatusCode

from underway import otel
from underway.errors import EnqueueError
from underway.jobs import Cancel, Error, Job, Jobs, JobState, Snooze
from underway.jobs.testing import drain_queue

from ..conftest import Database, MakeJobs, wait_for_state, wait_until
from .conftest import Instrument, Spans, parent_id, span_id, trace_id

ROOT = Path(__file__).resolve().parents[3]

# A node in a process of its own: it runs job sys.argv[2] of the database sys.argv[1] with
# spans of its own provider, and writes them as JSON to sys.argv[3] once the job finished.
NODE = textwrap.dedent(
    """
    import asyncio, json, os, sys, time
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from underway import otel
    from underway.jobs import Jobs

    url, job_id, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel.instrument(tracer_provider=provider)
    tracer = provider.get_tracer("node")
    jobs = Jobs(url, queues={"default": 2}, poll_interval=0.05, node_name="other-node")

    @jobs.worker(name="remote")
    async def remote(job):
        with tracer.start_as_current_span("inside remote"):
            pass

    async def main():
        deadline = time.monotonic() + 60
        async with jobs:
            while (await jobs.get_job(job_id)).state.value != "completed":
                assert time.monotonic() < deadline, "the job did not complete"
                await asyncio.sleep(0.05)
        spans = [
            {
                "name": s.name,
                "kind": s.kind.name,
                "trace_id": s.context.trace_id,
                "span_id": s.context.span_id,
                "parent_id": s.parent.span_id if s.parent else None,
                "attributes": dict(s.attributes),
            }
            for s in exporter.get_finished_spans()
        ]
        with open(out + ".part", "w") as f:
            json.dump(spans, f)
        os.replace(out + ".part", out)

    asyncio.run(main())
    """
)


def _run_node(tmp_path: Path, url: str, job_id: int) -> list[dict[str, Any]]:
    """Run :data:`NODE` on ``url`` until job ``job_id`` completed; its spans. Always reaped."""
    script, out, log = tmp_path / "node.py", tmp_path / "spans.json", tmp_path / "node.log"
    script.write_text(NODE)
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, str(script), url, str(job_id), str(out)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        status = proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert status == 0, log.read_text()
    spans: list[dict[str, Any]] = json.loads(out.read_text())
    return spans


def consumers(spans: Spans) -> dict[str, ReadableSpan]:
    """The consumer spans by the worker they ran."""
    found = {}
    for span in spans.of_kind(SpanKind.CONSUMER):
        assert span.attributes is not None
        found[str(span.attributes["messaging.underway.worker"])] = span
    return found


async def test_one_trace_from_an_enqueue_here_to_the_run_on_another_node(
    make_jobs: MakeJobs, database: Database, spans: Spans, instrument: Instrument, tmp_path: Path
) -> None:
    instrument()
    jobs = make_jobs()

    @jobs.worker(name="remote")
    async def remote(job: Job[Any]) -> None:
        raise AssertionError("runs on the other node only")

    with spans.tracer.start_as_current_span("request") as request:
        job = await remote.enqueue({"n": 1})
    assert job.meta[otel.META_KEY]["traceparent"].startswith("00-")
    producer = spans.one("default publish")
    assert producer.kind is SpanKind.PRODUCER
    assert trace_id(producer) == request.get_span_context().trace_id
    assert parent_id(producer) == request.get_span_context().span_id
    assert producer.attributes == {
        "messaging.system": "underway",
        "messaging.destination.name": "default",
        "messaging.operation.type": "send",
        "messaging.operation.name": "publish",
        "messaging.operation": "publish",
        "messaging.underway.worker": "remote",
        "messaging.message.id": str(job.id),
    }

    remote_spans = await asyncio.to_thread(_run_node, tmp_path, database.url, job.id)
    by_name = {s["name"]: s for s in remote_spans}
    consumer, inner = by_name["default process"], by_name["inside remote"]
    assert consumer["kind"] == "CONSUMER"
    assert consumer["trace_id"] == request.get_span_context().trace_id
    assert consumer["parent_id"] == span_id(producer)
    assert consumer["attributes"] == {
        "messaging.system": "underway",
        "messaging.destination.name": "default",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.operation": "process",
        "messaging.message.id": str(job.id),
        "messaging.underway.worker": "remote",
        "messaging.underway.attempt": 1,
        "messaging.underway.node": "other-node",
        "messaging.underway.outcome": "completed",
    }
    assert inner["trace_id"] == consumer["trace_id"]
    assert inner["parent_id"] == consumer["span_id"]


async def test_link_starts_a_new_trace_linked_to_the_enqueue(
    make_jobs: MakeJobs, spans: Spans, instrument: Instrument
) -> None:
    instrument(link=True)
    jobs = make_jobs()

    @jobs.worker
    async def linked(job: Job[Any]) -> None:
        pass

    job = await linked.enqueue({})
    async with jobs:
        await wait_for_state(jobs, job.id, JobState.COMPLETED)
        await wait_until(lambda: spans.named("default process"), message="the consumer span")
    producer, consumer = spans.one("default publish"), spans.one("default process")
    assert consumer.parent is None
    assert trace_id(consumer) != trace_id(producer)
    assert [link.context.span_id for link in consumer.links] == [span_id(producer)]
    assert consumer.links[0].context.trace_id == trace_id(producer)


async def test_each_outcome_is_recorded_on_its_consumer_span(
    make_jobs: MakeJobs, spans: Spans, instrument: Instrument
) -> None:
    instrument()
    jobs = make_jobs()

    @jobs.worker(name="completes")
    async def completes(job: Job[Any]) -> int:
        return 1

    @jobs.worker(name="fails", max_attempts=3)
    async def fails(job: Job[Any]) -> None:
        raise ValueError("boom")

    @jobs.worker(name="discarded", max_attempts=1)
    def discarded(job: Job[Any]) -> None:
        raise KeyError("gone")

    @jobs.worker(name="errs", max_attempts=1)
    async def errs(job: Job[Any]) -> Error:
        return Error("quota exceeded")

    @jobs.worker(name="snoozes")
    async def snoozes(job: Job[Any]) -> Snooze:
        return Snooze(3600)

    @jobs.worker(name="cancels")
    async def cancels(job: Job[Any]) -> Cancel:
        return Cancel("not wanted")

    workers = [completes, fails, discarded, errs, snoozes, cancels]
    enqueued = await jobs.enqueue_many([w.new({}) for w in workers])
    async with jobs:
        await wait_until(lambda: len(consumers(spans)) == 6, message="six consumer spans")
        await wait_for_state(jobs, enqueued[0].id, JobState.COMPLETED)
    found = consumers(spans)
    outcomes = {name: s.attributes["messaging.underway.outcome"] for name, s in found.items()}  # type: ignore[index]
    assert outcomes == {
        "completes": "completed",
        "fails": "failed",
        "discarded": "discarded",
        "errs": "discarded",
        "snoozes": "snoozed",
        "cancels": "cancelled",
    }
    for name in ("completes", "snoozes", "cancels"):
        assert found[name].status.status_code is StatusCode.UNSET, name
        assert found[name].events == ()
    for name, error in (("fails", "ValueError: boom"), ("discarded", "KeyError: 'gone'")):
        span = found[name]
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == error
        [event] = span.events
        assert event.name == "exception"
        assert event.attributes is not None
        assert event.attributes["exception.type"] == error.partition(":")[0]
    assert found["errs"].status.status_code is StatusCode.ERROR
    assert found["errs"].status.description == "quota exceeded"
    assert found["errs"].events == ()  # failed without raising: nothing to record
    for job, span in zip(enqueued, [found[w.name] for w in workers], strict=True):
        assert span.attributes is not None
        assert span.attributes["messaging.message.id"] == str(job.id)
        assert span.attributes["messaging.underway.attempt"] == 1


async def test_a_job_cancelled_while_it_runs_ends_its_span_cancelled_and_a_stop_interrupted(
    make_jobs: MakeJobs, spans: Spans, instrument: Instrument
) -> None:
    instrument()
    jobs = make_jobs(shutdown_grace=0.1)
    started: list[int] = []

    @jobs.worker
    async def waits(job: Job[Any]) -> None:
        started.append(job.id)
        await asyncio.Event().wait()

    cancelled, stopped = await jobs.enqueue_many([waits.new({}), waits.new({})])
    async with jobs:
        await wait_until(lambda: len(started) == 2, message="both jobs started")
        await jobs.cancel_job(cancelled.id)
        await wait_until(lambda: spans.named("default process"), message="the cancelled span")
    outcomes = {
        s.attributes["messaging.message.id"]: s.attributes["messaging.underway.outcome"]  # type: ignore[index]
        for s in spans.named("default process")
    }
    assert outcomes == {str(cancelled.id): "cancelled", str(stopped.id): "interrupted"}
    assert all(s.status.status_code is StatusCode.UNSET for s in spans.named("default process"))


async def test_a_span_of_the_job_nests_under_its_consumer_span_async_and_sync(
    make_jobs: MakeJobs, spans: Spans, instrument: Instrument
) -> None:
    instrument()
    jobs = make_jobs()
    threads: dict[str, int] = {}

    @jobs.worker(name="in_loop")
    async def in_loop(job: Job[Any]) -> None:
        with spans.tracer.start_as_current_span("user async"):
            await asyncio.sleep(0)

    @jobs.worker(name="in_thread")
    def in_thread(job: Job[Any]) -> None:
        threads["job"] = threading.get_ident()
        with spans.tracer.start_as_current_span("user sync"):
            pass

    first, second = await jobs.enqueue_many([in_loop.new({}), in_thread.new({})])
    async with jobs:
        threads["loop"] = threading.get_ident()
        await wait_for_state(jobs, first.id, JobState.COMPLETED)
        await wait_for_state(jobs, second.id, JobState.COMPLETED)
        await wait_until(lambda: len(consumers(spans)) == 2, message="two consumer spans")
    assert threads["job"] != threads["loop"]  # the sync body ran in a thread of its own
    found = consumers(spans)
    for user, worker in (("user async", "in_loop"), ("user sync", "in_thread")):
        span = spans.one(user)
        assert parent_id(span) == span_id(found[worker]), user
        assert trace_id(span) == trace_id(found[worker])
    assert trace.get_current_span() is trace.INVALID_SPAN  # nothing left current here


async def test_enqueue_many_gives_each_job_its_own_producer_span(
    make_jobs: MakeJobs, spans: Spans, instrument: Instrument
) -> None:
    instrument()
    jobs = make_jobs(testing="manual")

    @jobs.worker
    async def each(job: Job[Any]) -> None:
        pass

    inserted = await jobs.enqueue_many([each.new({"i": i}, meta={"mine": i}) for i in range(3)])
    producers = spans.named("default publish")
    assert [s.attributes["messaging.message.id"] for s in producers] == [  # type: ignore[index]
        str(j.id) for j in inserted
    ]
    assert len({span_id(s) for s in producers}) == 3
    assert len({trace_id(s) for s in producers}) == 3  # no span was current: three traces
    for job, span in zip(inserted, producers, strict=True):
        assert job.meta["mine"] == job.args["i"]  # the application's meta is kept
        assert f"{span_id(span):016x}" in job.meta[otel.META_KEY]["traceparent"]
    await drain_queue(jobs)
    runs = spans.named("default process")
    assert {parent_id(s) for s in runs} == {span_id(s) for s in producers}


async def test_enqueue_sync_from_a_thread_joins_the_thread_s_trace(
    make_jobs: MakeJobs, spans: Spans, instrument: Instrument
) -> None:
    instrument()
    jobs = make_jobs(testing="manual")

    @jobs.worker
    async def from_thread(job: Job[Any]) -> None:
        pass

    def enqueue() -> tuple[int, Job[Any]]:
        with spans.tracer.start_as_current_span("in a thread") as outer:
            return outer.get_span_context().span_id, from_thread.enqueue_sync({})

    outer_id, job = await asyncio.to_thread(enqueue)
    producer = spans.one("default publish")
    assert parent_id(producer) == outer_id
    assert producer.attributes is not None
    assert producer.attributes["messaging.message.id"] == str(job.id)


async def test_a_failed_insert_fails_its_producer_spans(
    make_jobs: MakeJobs, spans: Spans, instrument: Instrument, monkeypatch: pytest.MonkeyPatch
) -> None:
    instrument()
    jobs = make_jobs(testing="manual")

    @jobs.worker
    async def never(job: Job[Any]) -> None:
        pass

    async def refuse(specs: Any, *, conn: Any = None) -> Any:
        raise EnqueueError("the database refused")

    monkeypatch.setattr(jobs.engine, "insert", refuse)
    with pytest.raises(EnqueueError, match="the database refused"):
        await never.enqueue({})
    producer = spans.one("default publish")
    assert producer.status.status_code is StatusCode.ERROR
    assert producer.status.description == "EnqueueError: the database refused"
    assert producer.attributes is not None
    assert "messaging.message.id" not in producer.attributes


async def test_a_unique_duplicate_is_marked_on_its_producer_span(
    make_jobs: MakeJobs, spans: Spans, instrument: Instrument
) -> None:
    from underway.jobs import Unique

    instrument()
    jobs = make_jobs(testing="manual")

    @jobs.worker(unique=Unique())
    async def once(job: Job[Any]) -> None:
        pass

    first = await once.enqueue({"k": 1})
    again = await once.enqueue({"k": 1})
    assert again.conflict
    assert again.id == first.id
    first_span, second_span = spans.named("default publish")
    assert first_span.attributes is not None
    assert second_span.attributes is not None
    assert "messaging.underway.conflict" not in first_span.attributes
    assert second_span.attributes["messaging.underway.conflict"] is True
    assert second_span.attributes["messaging.message.id"] == str(first.id)


async def test_a_cron_job_gets_a_producer_span_and_runs_in_its_trace(
    make_jobs: MakeJobs, spans: Spans, instrument: Instrument
) -> None:
    instrument()
    jobs = make_jobs(leader_ttl=1.0)
    ran: list[int] = []

    @jobs.worker(name="warm")
    async def warm(job: Job[Any]) -> None:
        ran.append(job.id)

    entry = jobs.add_cron("@reboot", warm)
    async with jobs:
        await wait_until(lambda: ran, message="the cron job ran")
        await wait_until(lambda: spans.named("default process"), message="its span")
    producer, consumer = spans.one("default publish"), spans.one("default process")
    assert producer.attributes is not None
    assert producer.attributes["messaging.underway.cron"] == entry.key
    assert producer.attributes["messaging.message.id"] == str(ran[0])
    assert parent_id(consumer) == span_id(producer)


async def test_inline_jobs_run_under_their_producer_span(
    spans: Spans, instrument: Instrument
) -> None:
    instrument()
    jobs = Jobs(testing="inline")

    @jobs.worker
    async def inline(job: Job[Any]) -> None:
        with spans.tracer.start_as_current_span("user"):
            pass

    @jobs.worker(max_attempts=1)
    def inline_fails(job: Job[Any]) -> None:
        raise RuntimeError("inline failure")

    with spans.tracer.start_as_current_span("request"):
        done = await inline.enqueue({})
        failed = inline_fails.enqueue_sync({})
    assert done.state is JobState.COMPLETED
    assert failed.state is JobState.DISCARDED
    request = spans.one("request")
    [ok_producer, failed_producer] = spans.named("default publish")
    found = consumers(spans)
    assert parent_id(found[inline.name]) == span_id(ok_producer)
    assert parent_id(found[inline_fails.name]) == span_id(failed_producer)
    assert parent_id(ok_producer) == parent_id(failed_producer) == span_id(request)
    assert parent_id(spans.one("user")) == span_id(found[inline.name])
    assert found[inline_fails.name].status.status_code is StatusCode.ERROR
    assert {trace_id(s) for s in spans.finished} == {trace_id(request)}


async def test_uninstrument_stops_the_spans_and_the_stored_context(
    make_jobs: MakeJobs, spans: Spans, instrument: Instrument
) -> None:
    instrumentation = instrument()
    instrumentation.uninstrument()
    assert not instrumentation.active
    jobs = make_jobs()

    @jobs.worker
    def plain(job: Job[Any]) -> None:
        with spans.tracer.start_as_current_span("user"):
            pass

    job = await plain.enqueue({})
    assert otel.META_KEY not in job.meta
    async with jobs:
        await wait_for_state(jobs, job.id, JobState.COMPLETED)
    assert [s.name for s in spans.finished] == ["user"]
    assert spans.one("user").parent is None


@pytest.mark.parametrize(
    "stored",
    [
        {"traceparent": "00-not-a-trace-context-01"},
        {"traceparent": "00-" + "0" * 32 + "-" + "0" * 16 + "-01"},  # all-zero ids: invalid
        {"traceparent": 7},
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        None,
    ],
    ids=["garbage", "zero-ids", "not-text", "not-a-dict", "null"],
)
async def test_a_job_with_a_malformed_stored_context_runs_under_a_new_root_span(
    make_jobs: MakeJobs, spans: Spans, instrument: Instrument, stored: Any
) -> None:
    jobs = make_jobs()

    @jobs.worker
    async def odd(job: Job[Any]) -> None:
        with spans.tracer.start_as_current_span("user"):
            pass

    job = await odd.enqueue({}, meta={otel.META_KEY: stored})  # before instrument(): kept
    assert job.meta[otel.META_KEY] == stored
    instrument()
    async with jobs:
        finished = await wait_for_state(jobs, job.id)
        await wait_until(lambda: spans.named("default process"), message="the consumer span")
    assert finished.state is JobState.COMPLETED
    consumer = spans.one("default process")
    assert consumer.parent is None
    assert consumer.links == ()
    assert consumer.attributes is not None
    assert consumer.attributes["messaging.underway.outcome"] == "completed"
    assert parent_id(spans.one("user")) == span_id(consumer)


class _Broken(SpanProcessor):
    """A span processor that fails on every span it starts or ends (an exporter down)."""

    def __init__(self, *, on: str) -> None:
        self.on = on

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if self.on == "start":
            raise ConnectionError("exporter down")

    def on_end(self, span: Any) -> None:
        if self.on == "end":
            raise ConnectionError("exporter down")


@pytest.mark.parametrize("on", ["start", "end"])
async def test_a_failing_tracer_fails_no_enqueue_and_no_job(
    make_jobs: MakeJobs, spans: Spans, instrument: Instrument, on: str, caplog: Any
) -> None:
    spans.provider.add_span_processor(_Broken(on=on))
    instrument()
    jobs = make_jobs()
    ran: list[int] = []

    @jobs.worker(max_attempts=3)
    async def counted(job: Job[Any]) -> str:
        ran.append(job.id)
        return "ok"

    @jobs.worker(max_attempts=3)
    def counted_sync(job: Job[Any]) -> str:
        ran.append(job.id)
        return "ok"

    first = await counted.enqueue({})
    second = counted_sync.enqueue_sync({})
    async with jobs:
        for job in (first, second):
            done = await wait_for_state(jobs, job.id)
            assert done.state is JobState.COMPLETED, done.errors
            assert done.attempt == 1
    assert sorted(ran) == sorted([first.id, second.id])
    assert len(await jobs.list_jobs()) == 2  # each enqueued once
    assert "exporter down" in caplog.text  # the failure is logged, not lost
