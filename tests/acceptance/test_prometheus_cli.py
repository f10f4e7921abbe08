"""``underway start --metrics-port``: /metrics of one node, and of ``--processes 2`` merged."""

from __future__ import annotations

import re
import socket
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.acceptance._procs import node_alive, wait_for
from tests.acceptance.test_cli import Node, assert_one_line_error, stored, underway
from underway.jobs import Jobs, JobState

pytestmark = pytest.mark.acceptance

METRICS = ("--metrics-port", "0", "--metrics-addr", "127.0.0.1", "--metrics-interval", "0.2")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def served_port(node: Node) -> int | None:
    match = re.search(r"at http://127\.0\.0\.1:(\d+)/metrics", node.log)
    return int(match.group(1)) if match else None


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def get(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def enqueue(client: Jobs, completed: int, discarded: int) -> list[int]:
    add, explode = client.workers["cli_app.add"], client.workers["cli_app.explode"]
    ids = [add.enqueue_sync({"a": i, "b": 1, "sleep": 0.05}).id for i in range(completed)]
    return ids + [explode.enqueue_sync({"n": i}).id for i in range(discarded)]


def finished(client: Jobs, ids: list[int]) -> bool:
    final = (JobState.COMPLETED, JobState.DISCARDED)
    return all(stored(client, i).state in final for i in ids)


def reports(port: int, completed: int, discarded: int) -> bool:
    """Whether a scrape shows the counters and the leader's gauge of the run."""
    samples = scrape(port)
    counts = (
        get(
            samples,
            "underway_jobs_total",
            queue="default",
            worker="cli_app.add",
            outcome="completed",
        ),
        get(
            samples,
            "underway_jobs_total",
            queue="default",
            worker="cli_app.explode",
            outcome="discarded",
        ),
        get(samples, "underway_queue_jobs", queue="default", state="completed"),
        get(samples, "underway_queue_jobs", queue="default", state="discarded"),
        get(samples, "underway_queue_jobs", queue="default", state="available"),
    )
    return counts == (completed, discarded, completed, discarded, 0)


def test_one_node_serves_its_metrics(
    tmp_path: Path, url: str, client: Jobs, nodes: list[Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    ids = enqueue(client, 6, 2)
    node = Node(tmp_path, "--database", url, "--stats-interval", "0", *METRICS)
    nodes.append(node)
    port = wait_for(lambda: served_port(node), timeout=30, what="the metrics server")
    wait_for(lambda: finished(client, ids), timeout=30, what="the jobs", interval=0.05)
    wait_for(
        lambda: reports(port, 6, 2),
        timeout=30,
        what="the metrics of the run",
        interval=0.1,
        diagnose=lambda: f"{scrape(port)}\n{node.log}",
    )
    samples = scrape(port)
    assert (
        get(samples, "underway_job_duration_seconds_count", queue="default", worker="cli_app.add")
        == 6
    )
    assert get(samples, "underway_queue_jobs", queue="mail", state="completed") == 0
    assert node.stop(timeout=60) == 0, node.log
    assert "Traceback" not in node.log


def test_an_interval_of_zero_leaves_the_gauge_out(
    tmp_path: Path, url: str, client: Jobs, nodes: list[Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    ids = enqueue(client, 3, 0)
    node = Node(
        tmp_path,
        *("--database", url, "--stats-interval", "0"),
        *("--metrics-port", "0", "--metrics-addr", "127.0.0.1", "--metrics-interval", "0"),
    )
    nodes.append(node)
    port = wait_for(lambda: served_port(node), timeout=30, what="the metrics server")
    wait_for(lambda: finished(client, ids), timeout=30, what="the jobs", interval=0.05)
    labels = {"queue": "default", "worker": "cli_app.add", "outcome": "completed"}
    wait_for(
        lambda: get(scrape(port), "underway_jobs_total", **labels) == 3,
        timeout=30,
        what="the counters of the run",
        interval=0.1,
        diagnose=lambda: node.log,
    )
    assert {name for name, _ in scrape(port)} >= {"underway_job_duration_seconds_count"}
    assert not any(name == "underway_queue_jobs" for name, _ in scrape(port))
    assert node.stop(timeout=60) == 0, node.log
    assert "Traceback" not in node.log


@pytest.mark.parametrize("given", [False, True], ids=["temporary-dir", "given-dir"])
def test_processes_serve_the_merged_metrics_of_every_child(
    tmp_path: Path,
    url: str,
    client: Jobs,
    nodes: list[Node],
    monkeypatch: pytest.MonkeyPatch,
    given: bool,
) -> None:
    directory = tmp_path / "metrics"
    if given:
        directory.mkdir()
        (directory / "counter_1.db").write_bytes(b"from an earlier run")
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    else:
        monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    node = Node(
        tmp_path,
        *("--database", url, "--processes", "2", "--node-name", "pool"),
        *("--stats-interval", "0", *METRICS),
    )
    nodes.append(node)
    db = Path(url.removeprefix("sqlite:///"))
    wait_for(
        lambda: node_alive(db, "pool-0") and node_alive(db, "pool-1"),
        timeout=30,
        what="two node processes",
        diagnose=lambda: node.log,
    )
    port = served_port(node)
    assert port is not None, node.log
    found = re.search(r"node processes \(files in (.+)\) at http", node.log)
    assert found, node.log
    path = Path(found.group(1))
    if given:
        assert path == directory
        assert not (directory / "counter_1.db").exists(), "an earlier run's files are removed"

    ids = enqueue(client, 40, 4)
    wait_for(lambda: finished(client, ids), timeout=60, what="the jobs", interval=0.05)
    assert {stored(client, i).attempted_by for i in ids} == {"pool-0", "pool-1"}
    wait_for(
        lambda: reports(port, 40, 4),
        timeout=30,
        what="the merged metrics of the run",
        interval=0.1,
        diagnose=lambda: f"{scrape(port)}\n{node.log}",
    )
    samples = scrape(port)
    durations = "underway_job_duration_seconds_count"
    assert get(samples, durations, queue="default", worker="cli_app.add") == 40
    assert get(samples, durations, queue="default", worker="cli_app.explode") == 4
    assert len(list(path.glob("counter_*.db"))) == 2, "one file per child"

    assert node.stop(timeout=60) == 0, node.log
    assert "Traceback" not in node.log
    if given:
        assert len(list(directory.glob("counter_*.db"))) == 2, "counters outlive their process"
        assert list(directory.glob("gauge_live*.db")) == [], "the reaped children's gauges"
    else:
        assert not path.exists(), "the temporary directory is removed"


def test_a_port_in_use_is_a_one_line_error(url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = underway(
            "start",
            "cli_app:jobs",
            *("--database", url, "--metrics-port", str(port), "--metrics-addr", "127.0.0.1"),
            timeout=60,
        )
    assert_one_line_error(result, 1, f"cannot serve metrics on 127.0.0.1:{port}")
