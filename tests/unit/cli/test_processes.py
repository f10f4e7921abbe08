"""The policy of ``underway start --processes``: names, backoff, exit statuses, readiness."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from underway.cli._processes import (
    PARENT_ENV,
    READY_ENV,
    child_name,
    describe_exit,
    exit_status,
    report_ready,
    restart_delay,
    stop_when_parent_exits,
    take_parent_fd,
    take_ready_fd,
)


def test_a_restarted_child_gets_a_fresh_name_per_generation() -> None:
    assert child_name("pool", 0, 0) == "pool-0"
    assert child_name("pool", 1, 0) == "pool-1"
    assert child_name("pool", 0, 1) == "pool-0-r1"
    assert child_name("pool", 0, 7) == "pool-0-r7"


def test_restart_delays_double_up_to_a_cap() -> None:
    assert [restart_delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 30, 30, 30]


def test_exit_status_follows_shell_conventions() -> None:
    assert exit_status(0) == 0
    assert exit_status(3) == 3
    assert exit_status(-signal.SIGKILL) == 137
    assert exit_status(-signal.SIGTERM) == 143


def test_exits_are_described_with_signal_names() -> None:
    assert describe_exit(2) == "exited with status 2"
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL"
    assert describe_exit(-signal.SIGSEGV) == "killed by SIGSEGV"
    assert describe_exit(-250) == "killed by signal 250"


def test_a_child_reports_ready_once_through_the_inherited_pipe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    read_fd, write_fd = os.pipe()
    os.set_inheritable(write_fd, True)
    monkeypatch.setenv(READY_ENV, str(write_fd))
    try:
        fd = take_ready_fd()
        assert fd == write_fd
        assert READY_ENV not in os.environ, "its own subprocesses must not see the pipe"
        assert not os.get_inheritable(fd)
        report_ready(fd)
        assert os.read(read_fd, 10) == b"1"
        assert os.read(read_fd, 10) == b"", "the child's end is closed"
    finally:
        os.close(read_fd)


def test_without_a_parent_there_is_nothing_to_report(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(READY_ENV, raising=False)
    assert take_ready_fd() is None
    report_ready(None)  # no-op


def test_a_bad_descriptor_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(READY_ENV, "not-a-number")
    assert take_ready_fd() is None


def test_a_gone_parent_does_not_break_the_child() -> None:
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    report_ready(write_fd)  # EPIPE is swallowed and the descriptor closed
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(write_fd)


async def test_a_child_stops_once_the_parents_end_of_its_pipe_closes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    read_fd, write_fd = os.pipe()
    monkeypatch.setenv(PARENT_ENV, str(read_fd))
    fd = take_parent_fd()
    assert fd == read_fd
    assert PARENT_ENV not in os.environ
    assert not os.get_inheritable(fd)
    stopped = asyncio.Event()
    with stop_when_parent_exits(fd, stopped.set):
        await asyncio.sleep(0)  # one pass of the loop's selector: the parent is alive
        assert not stopped.is_set()
        os.close(write_fd)  # the parent dies: the kernel closes its end
        await asyncio.wait_for(stopped.wait(), timeout=10)
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)  # closed on the way out
