"""``underway.otel``: options, instrumenting once, where context is read, and no cost
while it is not used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from underway import otel
from underway.errors import ConfigError
from underway.jobs import Job, Jobs, JobState
from underway.jobs import _hooks as job_hooks
from underway.jobs._runtime import executor
from underway.otel._carrier import job_carrier
from underway.otel._pipelines import destination, system
from underway.pipelines import Message
from underway.pipelines import _hooks as pipeline_hooks

ROOT = Path(__file__).resolve().parents[2]
HOOKS = (
    job_hooks.enqueue_hooks,
    job_hooks.run_hooks,
    pipeline_hooks.message_hooks,
    pipeline_hooks.batch_hooks,
)


@pytest.fixture(autouse=True)
def _uninstrumented() -> Iterator[None]:
    assert all(hooks == [] for hooks in HOOKS)
    yield
    for hooks in HOOKS:
        assert hooks == [], "a test left hooks registered"


@pytest.fixture
def provider() -> Iterator[TracerProvider]:
    made = TracerProvider()
    yield made
    made.shutdown()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tracer_provider": "jaeger"}, "tracer_provider must be an OpenTelemetry TracerProvider"),
        ({"propagator": object()}, "propagator must be an OpenTelemetry TextMapPropagator"),
        ({"link": 1}, "link must be True or False, got 1"),
        ({"jobs": "yes"}, "jobs must be True or False, got 'yes'"),
        ({"pipelines": None}, "pipelines must be True or False, got None"),
        ({"jobs": False, "pipelines": False}, "jobs and pipelines are both False"),
    ],
    ids=["provider", "propagator", "link", "jobs", "pipelines", "nothing"],
)
def test_bad_options_are_config_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        otel.instrument(**options)


def test_instrument_is_idempotent_and_uninstrument_undoes_it(provider: TracerProvider) -> None:
    first = otel.instrument(tracer_provider=provider)
    assert first.active
    assert otel.instrument(tracer_provider=provider) is first
    assert all(len(hooks) == 1 for hooks in HOOKS)
    with pytest.raises(
        ConfigError,
        match=r"already instrumented with other options .* uninstrument\(\) on it first",
    ):
        otel.instrument(tracer_provider=provider, link=True)
    first.uninstrument()
    first.uninstrument()  # again: nothing
    assert all(hooks == [] for hooks in HOOKS)
    assert repr(first) == "<Instrumentation uninstrumented jobs=True pipelines=True>"
    second = otel.instrument(tracer_provider=provider, link=True)
    assert second is not first
    assert second.link
    first.uninstrument()  # the old one does not undo the new one
    assert second.active
    second.uninstrument()


@pytest.mark.parametrize(
    ("options", "registered"),
    [
        ({"jobs": False}, (0, 0, 1, 1)),
        ({"pipelines": False}, (1, 1, 0, 0)),
    ],
)
def test_jobs_or_pipelines_alone(
    provider: TracerProvider, options: dict[str, Any], registered: tuple[int, ...]
) -> None:
    instrumentation = otel.instrument(tracer_provider=provider, **options)
    assert tuple(len(hooks) for hooks in HOOKS) == registered
    instrumentation.uninstrument()


class _Custom(TextMapPropagator):
    """Carries the span context under ``x-trace``, in the tracecontext format."""

    inner = TraceContextTextMapPropagator()

    def inject(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        setter: Setter[CarrierT] = default_setter,
    ) -> None:
        fields: dict[str, str] = {}
        self.inner.inject(fields, context)
        if "traceparent" in fields:
            setter.set(carrier, "x-trace", fields["traceparent"])

    def extract(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        getter: Getter[CarrierT] = default_getter,
    ) -> Context:
        found = getter.get(carrier, "x-trace")
        return self.inner.extract({"traceparent": found[0]} if found else {}, context)

    @property
    def fields(self) -> set[str]:
        return {"x-trace"}


def test_a_propagator_given_is_the_one_used(provider: TracerProvider) -> None:
    instrumentation = otel.instrument(tracer_provider=provider, propagator=_Custom())
    jobs = Jobs(testing="inline")
    seen: list[dict[str, Any]] = []

    @jobs.worker
    def record(job: Job[Any]) -> None:
        seen.append(job.meta)

    try:
        record.enqueue_sync({})
    finally:
        instrumentation.uninstrument()
    assert list(seen[0][otel.META_KEY]) == ["x-trace"]


def test_all_lists_the_public_names() -> None:
    public = {n for n in vars(otel) if not n.startswith("_") and n != "annotations"}
    modules = {n for n in public if type(getattr(otel, n)).__name__ == "module"}
    assert set(otel.__all__) == public - modules
    for name in otel.__all__:
        assert (getattr(otel, name).__doc__ or "").strip() or name == "META_KEY", name


def test_message_headers_reads_every_broker_s_place() -> None:
    assert otel.message_headers({"headers": {"TraceParent": "a", "n": 1, "b": b"\xff"}}) == {
        "traceparent": "a"
    }
    assert otel.message_headers({"headers": [("traceparent", b"k"), ("bad",), 3]}) == {
        "traceparent": "k"
    }
    assert otel.message_headers({"headers": None, "attributes": {"tracestate": "p"}}) == {
        "tracestate": "p"
    }
    sqs = {"traceparent": {"DataType": "String", "StringValue": "s"}, "n": {"BinaryValue": b""}}
    assert otel.message_headers({"message_attributes": sqs}) == {"traceparent": "s"}
    assert otel.message_headers({"headers": "not headers"}) == {}
    assert otel.message_headers("not metadata") == {}
    both = {"attributes": {"traceparent": "first"}, "headers": {"traceparent": "second"}}
    assert otel.message_headers(both) == {"traceparent": "second"}
    # Google's Pub/Sub client libraries put the context under names prefixed googclient_;
    # a name without the prefix, set by the application, wins over one with it.
    google = {"googclient_traceparent": "g", "googclient_tracestate": "s", "tracestate": "own"}
    assert otel.message_headers({"attributes": google}) == {
        "googclient_traceparent": "g",
        "googclient_tracestate": "s",
        "traceparent": "g",
        "tracestate": "own",
    }


def test_job_carrier_takes_text_only() -> None:
    assert job_carrier({otel.META_KEY: {"traceparent": "t", "n": 1}}) == {"traceparent": "t"}
    assert job_carrier({otel.META_KEY: "t"}) == {}
    assert job_carrier({}) == {}
    assert job_carrier(None) == {}


def test_system_and_destination_of_a_message() -> None:
    kafka_acks = type("KafkaAcks", (), {"__module__": "underway.pipelines.producers.kafka._acks"})
    sqs_acks = type("SQSAcks", (), {"__module__": "underway.pipelines.producers.sqs._acks"})
    assert system(Message(data=1, acknowledger=kafka_acks())) == "kafka"
    assert system(Message(data=1, acknowledger=sqs_acks())) == "aws_sqs"
    assert system(Message(data=1)) == "underway"
    assert destination({"topic": "t", "routing_key": "r"}, "p") == "t"
    assert destination({"routing_key": "r"}, "p") == "r"
    assert destination({"topic": ""}, "p") == "p"


def test_without_instrument_enqueue_and_run_build_no_hook_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("hook work while nothing is instrumented")

    monkeypatch.setattr(job_hooks, "Enqueueing", refuse)
    monkeypatch.setattr(job_hooks, "Running", refuse)
    monkeypatch.setattr(executor, "contextvars", SimpleNamespace(copy_context=refuse))
    jobs = Jobs(testing="inline")
    ran: list[int] = []

    @jobs.worker
    def sync_job(job: Job[Any]) -> None:
        ran.append(job.id)

    job = sync_job.enqueue_sync({})
    assert job.state is JobState.COMPLETED
    assert ran == [job.id]


# Imports the core and runs a job and a pipeline message in a fresh interpreter, then tells
# which modules of OpenTelemetry (or of underway.otel) were imported.
_UNUSED = textwrap.dedent(
    """
    import asyncio, json, sys
    from underway.jobs import Jobs
    from underway.pipelines import DummyProducer, Pipeline
    from underway.pipelines.testing import test_message

    jobs = Jobs(testing="inline")

    @jobs.worker
    def job(job):
        return 1

    async def main():
        await job.enqueue({})
        pipeline = Pipeline(producer=DummyProducer(), handle_message=lambda m: m)
        async with pipeline:
            await test_message(pipeline, "x", metadata={"headers": {"traceparent": "t"}})

    asyncio.run(main())
    loaded = [m for m in sys.modules if m.startswith(("opentelemetry", "underway.otel"))]
    print(json.dumps(loaded))
    """
)


def test_the_core_never_imports_opentelemetry_while_running_jobs_and_messages() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _UNUSED],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


_MISSING = textwrap.dedent(
    """
    import importlib.abc, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path=None, target=None):
            if fullname.partition(".")[0] == "opentelemetry":
                raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
            return None

    sys.meta_path.insert(0, Block())
    try:
        import underway.otel
    except ModuleNotFoundError as exc:
        print(exc.name, "|", exc)
    """
)


def test_a_missing_opentelemetry_names_the_extra_to_install() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _MISSING],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("opentelemetry | underway.otel needs opentelemetry-api")
    assert "pip install 'underway[otel]'" in done.stdout
