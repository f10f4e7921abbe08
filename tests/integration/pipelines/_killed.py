"""A consumer process killed with SIGKILL and restarted: what it handled, across both lives.

As a program (``python -m tests.integration.pipelines._killed MODULE CONFIG OUT``) it runs
a pipeline over the producer that ``tests.integration.pipelines.MODULE`` builds with
``killed_producer(config)`` (``config`` is JSON), and appends ``killed_key(message)`` of each
message it handles to the file ``OUT``, one line per message, before the pipeline
acknowledges it. SIGTERM drains it (exit status 0).

:func:`kill_and_restart` starts it, SIGKILLs it once it handled ``kill_after`` messages,
starts it again and stops it (SIGTERM) once every expected key was handled. A message the
first process acknowledged is in ``OUT`` and never handled again; one it handled but had
not acknowledged is handled again: that is the only duplicate allowed.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from underway.pipelines import Message, Pipeline
from underway.tasks import run

__all__ = ["PROCESSORS", "kill_and_restart"]

ROOT = Path(__file__).resolve().parents[3]
# The child's processors: capacity 40, so at most 40 messages are in flight when it dies.
PROCESSORS = {"concurrency": 4, "max_demand": 10}


def _read(out: Path) -> list[str]:
    try:
        text = out.read_text()
    except FileNotFoundError:
        return []
    return [line for line in text.split("\n")[:-1] if line]  # a torn last line is not one


def _spawn(module: str, config: dict[str, Any], out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", __name__, module, json.dumps(config), str(out)],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )


async def _until(
    child: subprocess.Popen[bytes], out: Path, done: Any, timeout: float, what: str
) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        lines = _read(out)
        if done(lines):
            return lines
        if child.poll() is not None:
            raise AssertionError(f"the consumer exited ({child.returncode}) before {what}")
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s ({len(lines)} handled)")
        await asyncio.sleep(0.05)


async def kill_and_restart(
    module: str,
    config: dict[str, Any],
    expected: set[str],
    out: Path,
    *,
    kill_after: int,
    timeout: float = 60.0,
) -> tuple[list[str], list[str]]:
    """Run the consumer, SIGKILL it, run it again until ``expected`` is handled, stop it.

    Returns the keys the first life handled and those the second life handled (in order).

    Raises:
        AssertionError: A life exited early or did not get there within ``timeout``; the
            restarted consumer did not exit 0 when stopped.
    """
    first = _spawn(module, config, out)
    try:
        await _until(first, out, lambda ls: len(ls) >= kill_after, timeout, "the first handling")
    finally:
        first.kill()
        first.wait()
    before = _read(out)
    second = _spawn(module, config, out)
    try:
        lines = await _until(
            second,
            out,
            lambda ls: expected <= set(ls),
            timeout,
            "handling every message after the restart",
        )
        second.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(second.wait, 30)
        assert code == 0, f"the restarted consumer exited with {code} when stopped"
    finally:
        second.kill()
        second.wait()
    lines = _read(out)
    return before, lines[len(before) :]


def _main(argv: Sequence[str]) -> None:
    module_name, raw_config, out_path = argv
    module = importlib.import_module(f"tests.integration.pipelines.{module_name}")
    config = json.loads(raw_config)
    fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    delay = float(config.get("handler_delay", 0.0))

    async def handle(message: Message) -> Message:
        if delay:
            await asyncio.sleep(delay)
        os.write(fd, f"{module.killed_key(message)}\n".encode())
        return message

    pipeline = Pipeline(
        producer=module.killed_producer(config),
        handle_message=handle,
        processors=PROCESSORS,
        name="killed",
    )
    run([pipeline.child_spec()])


if __name__ == "__main__":
    _main(sys.argv[1:])
