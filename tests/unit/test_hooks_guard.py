"""Instrumentation hooks are entered guarded: a failing hook never fails the work."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest

from underway._hooks import enter_guarded


def _work(enter: Any, error: BaseException) -> None:
    """Enter hooks with ``enter(stack)``, then fail the work with ``error``."""
    with ExitStack() as stack:
        enter(stack)
        raise error


class Swallows:
    """A hook whose exit would suppress the work's exception."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True


def test_a_hook_failing_on_entry_is_left_out_and_the_others_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[str] = []

    def broken(name: str) -> Any:
        raise RuntimeError("no tracer")

    @contextmanager
    def fine(name: str) -> Iterator[None]:
        seen.append(f"enter {name}")
        yield
        seen.append(f"exit {name}")

    with ExitStack() as stack:
        enter_guarded(stack, [broken, fine], "job")
        seen.append("work")
    assert seen == ["enter job", "work", "exit job"]
    assert "no tracer" in caplog.text


def test_a_hook_failing_on_exit_leaves_the_outcome_as_it_was(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @contextmanager
    def broken_exit() -> Iterator[None]:
        try:
            yield
        finally:
            raise ConnectionError("exporter down")

    with ExitStack() as stack:
        enter_guarded(stack, [broken_exit])
    assert "exporter down" in caplog.text
    with pytest.raises(KeyError, match="the work's own"):
        _work(lambda stack: enter_guarded(stack, [broken_exit]), KeyError("the work's own"))


def test_the_work_s_exception_goes_through_every_hook_unchanged() -> None:
    seen: list[BaseException] = []

    @contextmanager
    def records() -> Iterator[None]:
        try:
            yield
        except BaseException as exc:
            seen.append(exc)
            raise

    error = ValueError("job failed")
    with pytest.raises(ValueError, match="job failed") as raised:  # Swallows cannot hide it
        _work(lambda stack: enter_guarded(stack, [records, Swallows]), error)
    assert raised.value is error
    assert seen == [error]


def test_a_base_exception_of_a_hook_is_not_swallowed() -> None:
    def interrupts() -> Any:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), ExitStack() as stack:
        enter_guarded(stack, [interrupts])
