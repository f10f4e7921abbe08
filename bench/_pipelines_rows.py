"""The Kafka, NATS JetStream and SQS rows of ``bench.pipelines``, and running one child.

Each row compares underway's producer with its peers on one broker: the same messages, the
same no-op handler, the same prefetch. The parent starts Tansu (Kafka) and moto (SQS) once
for the whole run (:class:`Servers`) and uses the NATS server at ``UNDERWAY_NATS_ADDR``;
every measurement is one child process (:func:`run_child`) that fills the broker, times its
consumer and checks at the broker that nothing is left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._harness import server_reachable

__all__ = [
    "KAFKA",
    "NATS",
    "ROWS",
    "SQS",
    "ChildFailed",
    "NotAvailable",
    "Row",
    "Servers",
    "System",
    "run_child",
]

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
CHILD_TIMEOUT = 600.0
UNAVAILABLE = 3


class ChildFailed(RuntimeError):
    """A measurement subprocess failed."""


class NotAvailable(RuntimeError):
    """The system cannot run here (for underway: its producer cannot be imported)."""


def run_child(python: Path, script: str, opts: Sequence[str]) -> dict[str, Any]:
    """Run one measurement subprocess and return the JSON object it printed last."""
    argv = [str(python), str(HERE / script), *opts]
    try:
        done = subprocess.run(
            argv, cwd=ROOT, capture_output=True, text=True, timeout=CHILD_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise ChildFailed(f"timed out after {CHILD_TIMEOUT:.0f} s") from exc
    lines = done.stdout.strip().splitlines()
    last: dict[str, Any] = {}
    if lines:
        try:
            last = json.loads(lines[-1])
        except json.JSONDecodeError:
            last = {}
    if done.returncode == UNAVAILABLE and "unavailable" in last:
        raise NotAvailable(str(last["unavailable"]))
    if done.returncode != 0 or not last:
        tail = "\n    ".join((done.stderr or done.stdout).strip().splitlines()[-6:])
        raise ChildFailed(f"failed (exit {done.returncode}):\n    {tail}")
    return last


@dataclass(frozen=True)
class System:
    """One consumer of a broker row and how to run it."""

    key: str  # the figures' prefix, e.g. "kafka_underway"
    label: str
    script: str
    venv: str = "underway"  # "underway": this interpreter; "faststream": FastStream's venv
    option: str = ""  # the child's option that picks a variant
    variants: tuple[str, ...] = ("",)


@dataclass(frozen=True)
class Row:
    """One broker and the systems that consume it, underway first."""

    name: str  # "kafka", "nats", "sqs"
    title: str
    systems: tuple[System, ...]
    # ratio name -> the peer's key; the ratio is underway's figure over the peer's
    ratios: dict[str, str] = field(default_factory=dict)


KAFKA = Row(
    "kafka",
    "Kafka (Tansu)",
    (
        System("kafka_underway", "underway Pipeline", "_underway_kafka.py"),
        System("kafka_faststream", "FastStream batch", "_peer_faststream_kafka.py", "faststream"),
        System("kafka_aiokafka_loop", "aiokafka loop", "_peer_kafka.py"),
    ),
    {"kafka_vs_faststream": "kafka_faststream", "kafka_vs_aiokafka_loop": "kafka_aiokafka_loop"},
)
NATS = Row(
    "nats",
    "NATS JetStream",
    (
        System("nats_underway", "underway Pipeline", "_underway_nats.py"),
        System(
            "nats_faststream",
            "FastStream",
            "_peer_faststream_nats.py",
            "faststream",
            "--variant",
            ("pull", "batch"),
        ),
        System("nats_natspy_loop", "nats-py loop", "_peer_natspy.py"),
    ),
    {"nats_vs_faststream": "nats_faststream", "nats_vs_natspy_loop": "nats_natspy_loop"},
)
SQS = Row(
    "sqs",
    "SQS (moto)",
    (
        System("sqs_underway", "underway Pipeline", "_underway_sqs.py"),
        System("sqs_aiobotocore_loop", "aiobotocore loop", "_peer_aiobotocore.py"),
    ),
    {"sqs_vs_aiobotocore_loop": "sqs_aiobotocore_loop"},
)
ROWS = (KAFKA, NATS, SQS)


def _tests_servers() -> Any:
    """``tests.servers`` (the test suite's server starters), imported from the repository."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import tests.servers

    return tests.servers


@dataclass
class Servers:
    """The brokers of the rows: Tansu and moto started here once, NATS found running.

    ``options[row]`` holds the options that point a child at its broker; ``missing[row]``
    says why a row cannot run.
    """

    options: dict[str, list[str]] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    _stops: list[Callable[[], None]] = field(default_factory=list)

    def start(self, rows: Sequence[Row]) -> Servers:
        """Start or find the broker of every row in ``rows``."""
        names = {row.name for row in rows}
        if "kafka" in names:
            self._start("kafka", "start_tansu", lambda s: ["--bootstrap", s.address])
        if "sqs" in names:
            self._start("sqs", "start_moto", lambda s: ["--endpoint", f"http://{s.address}"])
        if "nats" in names:
            address = os.environ.get("UNDERWAY_NATS_ADDR", "127.0.0.1:4222")
            url = f"nats://{address}"
            problem = server_reachable(url, 4222, "NATS server")
            if problem:
                self.missing["nats"] = problem
            else:
                self.options["nats"] = ["--url", url]
        return self

    def _start(self, row: str, starter: str, options: Callable[[Any], list[str]]) -> None:
        try:
            servers = _tests_servers()
            server = getattr(servers, starter)()
        except Exception as exc:
            self.missing[row] = f"{starter}: {exc}"
            return
        self._stops.append(server.stop)
        self.options[row] = options(server)

    def stop(self) -> None:
        """Stop the servers this object started (each process group, reaped)."""
        while self._stops:
            self._stops.pop()()
