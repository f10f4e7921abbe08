"""The examples in ``examples/`` run as documented and print what they promise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.rabbitmq
def test_the_rabbitmq_pipeline_example_stores_batches_and_dead_letters_failures() -> None:
    host, _, port = os.environ.get("UNDERWAY_RABBITMQ_ADDR", "127.0.0.1:5672").rpartition(":")
    env = {**os.environ, "RABBITMQ_URL": f"amqp://guest:guest@{host or '127.0.0.1'}:{port}/"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "pipeline_rabbitmq.py")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "stored per tenant: {'t0': 328, 't1': 325, 't2': 327}"
    assert lines[1] == "failed: {'DecodeError': 10, 'test events are not stored': 10}"
    assert lines[2] == "dead-lettered: 20 left in the queue: 0"
