"""``underway start --processes N``: run N node processes and keep them running.

Each child is ``underway start`` with the same options, so every core can run jobs. A
child reports that its node has started by writing one byte to a pipe it inherits (its
descriptor number is in ``UNDERWAY_READY_FD``); nothing else counts as started.

Each child runs in a process group of its own, so a terminal's Ctrl-C (SIGINT to the
foreground process group) reaches the parent alone, which forwards it once: a child that
got the terminal's signal and then the parent's would take the second as "cancel running
jobs now" and skip the grace period. A second Ctrl-C is forwarded as a second signal and
does cut the grace short, as for a single node.

The children also inherit the read end of a pipe whose write end only the parent holds
(``UNDERWAY_PARENT_FD``). When the parent dies, however (SIGKILL, or SIGHUP when its
terminal closes), the kernel closes that end and each child sees end of file and stops
gracefully, as on SIGTERM, instead of running on as an orphan.

- A child that exits before it is ready failed to start. If its slot never had a ready
  child (a bad import, bad settings, an unreachable database), or its replacements failed
  to start ``_START_ATTEMPTS`` times in a row, the parent stops the other children and
  exits with the failed child's status: its exit code, or 128 + N when signal N killed it.
- A child that dies after it was ready is started again under a fresh node name
  (``NAME-I-rG`` for the G-th restart of slot I), so the lifeline rescues the dead
  incarnation's jobs as any dead node's. Restarts back off exponentially (1 s doubling
  to 30 s); a child that stayed up for 60 s earns its slot the short delay again.
- SIGTERM and SIGINT are forwarded to the children, once per signal received; the parent
  exits once they all have, with 0 when each stopped cleanly (or died of the forwarded
  signal before it could handle it), else the first failure's status.

With ``--metrics-port`` the children record their metrics in files of one directory
(prometheus-client's multiprocess mode, :func:`metrics_directory`) and the parent serves
them merged; the parent drops a child's live gauges when it reaps the child.
"""

from __future__ import annotations

import asyncio
import logging
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

__all__ = [
    "METRICS_ENV",
    "PARENT_ENV",
    "READY_ENV",
    "child_argv",
    "child_name",
    "describe_exit",
    "exit_status",
    "metrics_directory",
    "report_ready",
    "restart_delay",
    "run_processes",
    "stop_when_parent_exits",
    "take_parent_fd",
    "take_ready_fd",
]

READY_ENV = "UNDERWAY_READY_FD"
PARENT_ENV = "UNDERWAY_PARENT_FD"
METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"
_log = logging.getLogger("underway.cli")
_TICK = 0.1  # how often child exits and forwarded signals are looked at
_FIRST_DELAY = 1.0
_MAX_DELAY = 30.0
_STABLE = 60.0  # a child ready this long resets its slot's backoff
_START_ATTEMPTS = 5  # replacements that fail to start this often in a row stop the group


# -- policy (pure) ----------------------------------------------------------------------------


def child_name(base: str, index: int, generation: int) -> str:
    """The node name of slot ``index``'s child after ``generation`` restarts."""
    return f"{base}-{index}" if generation == 0 else f"{base}-{index}-r{generation}"


def restart_delay(deaths: int) -> float:
    """Seconds to wait before the restart that follows ``deaths`` (>= 1) quick deaths."""
    return min(_FIRST_DELAY * 2.0 ** (max(deaths, 1) - 1), _MAX_DELAY)


def exit_status(returncode: int) -> int:
    """A child's ``Popen.returncode`` as a shell exit status (128 + N for signal N)."""
    return 128 - returncode if returncode < 0 else returncode


def describe_exit(returncode: int) -> str:
    """``"exited with status 3"`` or ``"killed by SIGKILL"``."""
    if returncode >= 0:
        return f"exited with status {returncode}"
    try:
        return f"killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"killed by signal {-returncode}"


# -- the child's side -------------------------------------------------------------------------


def _take_fd(env: str) -> int | None:
    """The descriptor named by ``env`` (removed), kept from the child's own subprocesses."""
    value = os.environ.pop(env, None)
    if value is None:
        return None
    try:
        fd = int(value)
        os.set_inheritable(fd, False)
    except (ValueError, OSError):
        _log.warning("ignoring %s=%r: not an open file descriptor", env, value)
        return None
    return fd


def take_ready_fd() -> int | None:
    """In a child: the inherited readiness pipe, kept from the child's own subprocesses."""
    return _take_fd(READY_ENV)


def take_parent_fd() -> int | None:
    """In a child: the inherited pipe that reaches end of file when the parent is gone."""
    return _take_fd(PARENT_ENV)


@contextmanager
def stop_when_parent_exits(fd: int | None, stop: Callable[[], None]) -> Iterator[None]:
    """In a child, on the running event loop: call ``stop`` once the parent is gone.

    Nothing is ever written to ``fd``, so it becomes readable only at end of file, when
    the parent process has exited, however it died. ``fd`` is closed on the way out.
    """
    if fd is None:
        yield
        return
    loop = asyncio.get_running_loop()

    def gone() -> None:
        loop.remove_reader(fd)
        _log.warning("the parent process is gone; stopping")
        stop()

    loop.add_reader(fd, gone)
    try:
        yield
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def report_ready(fd: int | None) -> None:
    """In a child: tell the parent the node has started (once; closes ``fd``)."""
    if fd is None:
        return
    try:
        with suppress(OSError):  # the parent is gone; it has nothing left to decide
            os.write(fd, b"1")
    finally:
        os.close(fd)


# -- the parent's side ------------------------------------------------------------------------


@dataclass
class _Slot:
    index: int
    generation: int = 0
    ever_ready: bool = False
    deaths: int = 0  # quick deaths after being ready, for the backoff
    start_failures: int = 0  # replacements that failed to start, in a row
    due: float | None = None  # when to start the next child, if none runs


@dataclass
class _Child:
    slot: _Slot
    name: str
    proc: subprocess.Popen[bytes]
    ready_fd: int
    ready_at: float | None = None
    registered: bool = False


class _Group:
    def __init__(
        self,
        count: int,
        base: str,
        argv: Callable[[str], Sequence[str]],
        on_exit: Callable[[int], None] | None = None,
    ) -> None:
        self.base, self.argv, self.on_exit = base, argv, on_exit
        self.slots = [_Slot(i) for i in range(count)]
        self.children: dict[int, _Child] = {}  # slot index -> running child
        self.selector = selectors.DefaultSelector()
        self.signals: list[int] = []  # received, not yet forwarded
        self.stop_signal: int | None = None
        self.code = 0
        # Children inherit the read end; the write end stays here, never written to, so it
        # is closed (the children see end of file) exactly when this process ends.
        self.parent_read, self._parent_write = os.pipe()

    def run(self) -> int:
        for slot in self.slots:
            self._spawn(slot)
        while self.stop_signal is None or self.children:
            self._wait()
            self._forward()
            for child in list(self.children.values()):
                returncode = child.proc.poll()
                if returncode is not None:
                    self._exited(child, returncode)
            self._restart_due()
        return self.code

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals.append(signum)  # acted on by the loop, never mid-iteration

    def kill_all(self) -> None:
        """SIGKILL and reap every child still running (after an unexpected error)."""
        for child in list(self.children.values()):
            if child.proc.poll() is None:
                child.proc.kill()
            child.proc.wait()
            self._forget(child)
        self.selector.close()
        os.close(self.parent_read)
        os.close(self._parent_write)

    def _spawn(self, slot: _Slot) -> None:
        slot.due = None
        name = child_name(self.base, slot.index, slot.generation)
        read_fd, write_fd = os.pipe()
        try:
            proc = subprocess.Popen(
                list(self.argv(name)),
                env={**os.environ, READY_ENV: str(write_fd), PARENT_ENV: str(self.parent_read)},
                pass_fds=(write_fd, self.parent_read),
                process_group=0,  # terminal signals reach the parent alone (forwarded once)
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        os.set_blocking(read_fd, False)
        child = _Child(slot, name, proc, read_fd)
        self.selector.register(read_fd, selectors.EVENT_READ, child)
        child.registered = True
        self.children[slot.index] = child
        _log.info("spawned node process %s (pid %d)", name, proc.pid)

    def _wait(self) -> None:
        timeout = _TICK
        if self.stop_signal is None:
            dues = [s.due for s in self.slots if s.due is not None]
            if dues:
                timeout = min(timeout, max(0.0, min(dues) - time.monotonic()))
        if not self.selector.get_map():
            time.sleep(timeout)
            return
        for key, _ in self.selector.select(timeout):
            self._read(key.data)

    def _read(self, child: _Child) -> None:
        try:
            data = os.read(child.ready_fd, 64)
        except BlockingIOError:
            return
        if data and child.ready_at is None:
            child.ready_at = time.monotonic()
            child.slot.ever_ready = True
            child.slot.start_failures = 0
            _log.info("node process %s (pid %d) is ready", child.name, child.proc.pid)
        if not data and child.registered:  # end of file: nothing more will come
            self.selector.unregister(child.ready_fd)
            child.registered = False

    def _forward(self) -> None:
        while self.signals:
            signum = self.signals.pop(0)
            self._stop_group(signum)

    def _stop_group(self, signum: int) -> None:
        """Send ``signum`` to every child; no restarts from now on."""
        if self.stop_signal is None:
            self.stop_signal = signum
            for slot in self.slots:
                slot.due = None
        for child in self.children.values():
            if child.proc.poll() is None:
                child.proc.send_signal(signum)

    def _exited(self, child: _Child, returncode: int) -> None:
        if child.registered:
            self._read(child)  # a ready byte written just before the exit still counts
        self._forget(child)
        pid, what = child.proc.pid, describe_exit(returncode)
        if self.stop_signal is not None:
            if returncode in (0, -self.stop_signal):  # stopped as asked
                return
            _log.warning("node process %s (pid %d) %s while stopping", child.name, pid, what)
            self.code = self.code or exit_status(returncode)
            return
        slot = child.slot
        slot.generation += 1
        if child.ready_at is None:
            slot.start_failures += 1
            if not slot.ever_ready or slot.start_failures >= _START_ATTEMPTS:
                _log.error(
                    "node process %s (pid %d) failed to start: %s before it was ready; "
                    "stopping the other node processes",
                    child.name,
                    pid,
                    what,
                )
                self.code = exit_status(returncode) or 1
                self._stop_group(signal.SIGTERM)
                return
            delay = restart_delay(slot.start_failures)
            reason = f"failed to start ({what} before it was ready)"
        else:
            if time.monotonic() - child.ready_at >= _STABLE:
                slot.deaths = 0
            slot.deaths += 1
            delay = restart_delay(slot.deaths)
            reason = f"{what} after it was ready"
        slot.due = time.monotonic() + delay
        _log.warning(
            "node process %s (pid %d) %s; starting %s in %gs",
            child.name,
            pid,
            reason,
            child_name(self.base, slot.index, slot.generation),
            delay,
        )

    def _forget(self, child: _Child) -> None:
        if child.registered:
            self.selector.unregister(child.ready_fd)
            child.registered = False
        os.close(child.ready_fd)
        del self.children[child.slot.index]
        if self.on_exit is not None:
            try:
                self.on_exit(child.proc.pid)
            except Exception as exc:  # bookkeeping; it must not stop the other children
                _log.warning("after node process %s exited: %s", child.name, exc)

    def _restart_due(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            if slot.due is not None and slot.due <= now and self.stop_signal is None:
                self._spawn(slot)


def run_processes(
    count: int,
    base: str,
    argv: Callable[[str], Sequence[str]],
    *,
    on_exit: Callable[[int], None] | None = None,
) -> int:
    """Run ``count`` children, each with ``argv(node_name)``, until a signal stops them.

    Args:
        count: How many children run at once.
        base: The node name the children's names are built from (``base-0``...).
        argv: The command line of the child with a node name.
        on_exit: Called with the pid of each child once it is reaped.

    Returns:
        The exit status: 0 when every child stopped cleanly, else the failed child's status
        (its exit code, or 128 + N when signal N killed it).
    """
    group = _Group(count, base, argv, on_exit)
    handled = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.signal(sig, group.on_signal) for sig in handled}
    try:
        return group.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        group.kill_all()


def child_argv(args: Sequence[str]) -> list[str]:
    """The command line that runs one node with ``args`` (``start`` and its options)."""
    return [sys.executable, "-m", "underway", *args]


@contextmanager
def metrics_directory() -> Iterator[str]:
    """The directory of prometheus-client's multiprocess mode, set for this process's children.

    ``PROMETHEUS_MULTIPROC_DIR`` names it: the one given in the environment (created if
    missing, its ``*.db`` files of an earlier run removed), else a new temporary directory,
    removed on the way out. Children started inside the block inherit the variable, so it
    is set before they import prometheus_client, as that mode requires.
    """
    given = os.environ.get(METRICS_ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink(missing_ok=True)
        yield given
        return
    made = tempfile.mkdtemp(prefix="underway-metrics-")
    os.environ[METRICS_ENV] = made
    try:
        yield made
    finally:
        os.environ.pop(METRICS_ENV, None)
        shutil.rmtree(made, ignore_errors=True)
