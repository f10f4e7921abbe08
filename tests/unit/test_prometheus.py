"""``underway.prometheus``: instrument and detach, the exposition, the HTTP server."""

from __future__ import annotations

import re
import types
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter

import underway.prometheus
from underway import _telemetry as telemetry
from underway.errors import ConfigError
from underway.jobs import Jobs
from underway.prometheus import CONTENT_TYPE, Metrics, exposition, instrument, serve


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> Iterator[Metrics]:
    with instrument(registry=registry) as made:
        yield made


def test_arguments_are_checked(registry: CollectorRegistry) -> None:
    with pytest.raises(ConfigError, match="interval must be a number of seconds > 0, got 0"):
        instrument(registry=registry, interval=0)
    with pytest.raises(ConfigError, match="got True"):
        instrument(registry=registry, interval=True)
    with pytest.raises(ConfigError, match=r"jobs must be an underway\.jobs\.Jobs app, got dict"):
        instrument({}, registry=registry)  # type: ignore[arg-type]
    assert list(registry.collect()) == []


def test_one_registry_takes_the_metrics_once(registry: CollectorRegistry, metrics: Metrics) -> None:
    clash = Counter("underway_messages_total", "taken", registry=None)
    other = CollectorRegistry()
    other.register(clash)
    with pytest.raises(ConfigError, match="already in this registry"):
        instrument(registry=registry)
    with pytest.raises(ConfigError, match="already in this registry"):
        instrument(registry=other)
    assert [f.name for f in other.collect()] == ["underway_messages"]  # left as it was
    metrics.detach()
    metrics.detach()  # twice is fine
    with instrument(registry=registry):
        names = {f.name for f in registry.collect()}
    assert names == {
        "underway_jobs",
        "underway_job_duration_seconds",
        "underway_queue_jobs",
        "underway_messages",
        "underway_batch_size",
    }
    assert list(registry.collect()) == []


def test_the_attempt_outcome_is_the_state_it_left_the_job_in(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    # The metadata the executor sends (a snooze leaves the job scheduled).
    meta = {"queue": "q", "worker": "w", "node": "n"}
    telemetry.emit("job.stop", {"duration": 0.5}, {**meta, "state": "scheduled"})
    telemetry.emit("job.stop", {"duration": 0.25}, {**meta, "state": "completed"})
    telemetry.emit("job.exception", {"duration": 2.0}, {**meta, "state": "retryable"})
    telemetry.emit("job.start", {"system_time": 0.0}, meta)

    def total(outcome: str) -> float | None:
        labels = {"queue": "q", "worker": "w", "outcome": outcome}
        return registry.get_sample_value("underway_jobs_total", labels)

    assert (total("snoozed"), total("completed"), total("retryable")) == (1, 1, 1)
    assert total("scheduled") is None
    labels = {"queue": "q", "worker": "w"}
    assert registry.get_sample_value("underway_job_duration_seconds_sum", labels) == 2.75
    assert registry.get_sample_value("underway_job_duration_seconds_count", labels) == 3


def test_without_jobs_there_is_no_gauge_reading(metrics: Metrics) -> None:
    assert metrics.refresh() is False


def test_a_jobs_app_that_runs_no_node_reads_nothing(
    registry: CollectorRegistry, tmp_path: Path
) -> None:
    jobs = Jobs(f"sqlite:///{tmp_path / 'jobs.db'}", testing="manual")
    with instrument(jobs, registry=registry, interval=3600) as metrics:
        assert metrics.refresh() is False
    (family,) = metrics.queue_jobs.collect()
    assert family.samples == []


def test_the_server_answers_scrapes_until_closed(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    metrics.messages_total.labels("p", "processor", "ok").inc(3)
    server = serve(0, addr="127.0.0.1", registry=registry)
    host, port = server.address
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as response:
            body = response.read()
            assert response.headers["Content-Type"] == CONTENT_TYPE
    finally:
        server.close()
    server.close()
    assert body == exposition(registry)
    text = body.decode()
    assert "# TYPE underway_messages_total counter" in text
    assert 'underway_messages_total{outcome="ok",pipeline="p",stage="processor"} 3.0' in text
    with pytest.raises(urllib.error.URLError, match="refused"):
        urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10)


def test_a_taken_port_is_a_config_error(registry: CollectorRegistry) -> None:
    server = serve(0, addr="127.0.0.1", registry=registry)
    try:
        port = server.address[1]
        taken = re.escape(f"cannot serve metrics on 127.0.0.1:{port}")
        with pytest.raises(ConfigError, match=taken):
            serve(port, addr="127.0.0.1", registry=registry)
    finally:
        server.close()


def test_the_public_surface_is_listed_and_documented() -> None:
    public = {
        name
        for name, value in vars(underway.prometheus).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(underway.prometheus.__all__) == public
    for name in public - {"CONTENT_TYPE"}:
        assert (getattr(underway.prometheus, name).__doc__ or "").strip(), name
