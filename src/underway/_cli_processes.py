"""``underway start --processes N``: run N node processes and keep them running.

Each child is ``underway start`` with the same options, so every core can run jobs. The
parent forwards SIGTERM and SIGINT to the children and waits for their graceful stops. A
child that dies later is started again; a child that fails within its first seconds
(a bad app, an unreachable database) stops the whole group instead of looping.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from types import FrameType

__all__ = ["run_processes"]

_log = logging.getLogger("underway.cli")
_STARTUP = 5.0  # a child that exits sooner failed to start
_RESTART_DELAY = 1.0


class _Child:
    def __init__(self, index: int, argv: Sequence[str]) -> None:
        self.index = index
        self.proc = subprocess.Popen(list(argv))
        self.started = time.monotonic()


def run_processes(count: int, argv: Callable[[int], Sequence[str]]) -> int:
    """Run ``count`` children, child ``i`` with ``argv(i)``, until a signal stops them.

    Returns:
        The exit code: 0 when every child stopped cleanly, else the first failure's code.
    """
    stopping = False

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.proc.poll() is None:
                child.proc.send_signal(signum)

    children = [_Child(i, argv(i)) for i in range(count)]
    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    _log.info("started %d node processes: %s", count, ", ".join(str(c.proc.pid) for c in children))
    code = 0
    try:
        while any(c.proc.poll() is None for c in children) or not stopping:
            time.sleep(0.2)
            for child in children:
                rc = child.proc.poll()
                if rc is None or stopping:
                    continue
                if time.monotonic() - child.started < _STARTUP:
                    _log.error("node process %d failed to start (exit %d)", child.proc.pid, rc)
                    code = rc or 1
                    forward(signal.SIGTERM, None)
                    break
                _log.warning("node process %d exited (%d); starting another", child.proc.pid, rc)
                time.sleep(_RESTART_DELAY)
                children[child.index] = _Child(child.index, argv(child.index))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for child in children:
        rc = child.proc.wait()
        if rc and not code:
            code = rc
    return code


def child_argv(args: Sequence[str]) -> list[str]:
    """The command line that runs one node with ``args`` (``start`` and its options)."""
    return [sys.executable, "-m", "underway", *args]
