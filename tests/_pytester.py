"""Running a user's pytest suite in a subprocess that is always reaped.

``Pytester.runpytest_subprocess`` waits without a bound by default, and when the outer
test's own timeout interrupts that wait the child is neither killed nor reaped: it runs
on, and its ``Popen`` later fails an unrelated test with ``ResourceWarning: subprocess
... is still running``. :func:`run_pytest` bounds the run below the outer per-test
timeout and kills and reaps the child on every way out.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import pytest

__all__ = ["INNER_TIMEOUT", "run_pytest"]

#: Seconds one inner run may take: far above the second or two it takes on a loaded
#: machine, and below the outer per-test timeout (120 s in pyproject.toml), so that a
#: hang fails the test here, with the inner run's output, instead of leaving it behind.
INNER_TIMEOUT = 90.0


def run_pytest(
    pytester: pytest.Pytester, *args: str, timeout: float = INNER_TIMEOUT
) -> pytest.RunResult:
    """Run pytest with ``args`` in a subprocess in ``pytester``'s directory.

    Like ``pytester.runpytest_subprocess`` (own ``--basetemp``, the directory on
    ``PYTHONPATH``), but the child is killed after ``timeout`` seconds, or as soon as
    this call is interrupted, and always waited for.

    Raises:
        pytest.fail.Exception: The run took longer than ``timeout`` (its output is shown).
    """
    basetemp = tempfile.mkdtemp(prefix="runpytest-", dir=pytester.path)
    argv = [sys.executable, "-m", "pytest", f"--basetemp={basetemp}", *args]
    started = time.monotonic()
    proc = pytester.popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        encoding="utf-8",
        errors="replace",
    )
    with proc:  # on leaving: pipes closed and the process waited for, in every case
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(
                f"the inner pytest run did not end within {timeout:g} s and was killed:"
                f"{os.linesep}{out}{os.linesep}{err}",
                pytrace=False,
            )
        except BaseException:  # the outer timeout, Ctrl-C: never leave the child behind
            proc.kill()
            raise
    print(out)  # shown with a failing outer test, as pytester does
    print(err, file=sys.stderr)
    return pytest.RunResult(
        proc.returncode, out.splitlines(), err.splitlines(), time.monotonic() - started
    )
