"""The service groups of the test suite: skipped with a plain summary, failed under CI."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests._pytester import run_pytest

pytest_plugins = ["pytester"]

CONFTEST = (Path(__file__).parents[1] / "conftest.py").read_text()

TEST_FILE = """
import pytest

@pytest.mark.postgres
def test_needs_postgres():
    assert True

def test_plain():
    assert True
"""


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_groups=TEST_FILE)
    monkeypatch.setenv("UNDERWAY_POSTGRES_ADDR", f"127.0.0.1:{_closed_port()}")
    return pytester


def test_missing_server_skips_its_group_and_says_so(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    result = run_pytest(project, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED GROUP postgres: 1 test(s), no server at 127.0.0.1:*"])


def test_missing_server_fails_under_ci(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    result = run_pytest(project, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*postgres is not reachable*CI=true*"])


def test_reachable_server_runs_its_group(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setenv("UNDERWAY_POSTGRES_ADDR", f"127.0.0.1:{server.getsockname()[1]}")
        result = run_pytest(project, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
