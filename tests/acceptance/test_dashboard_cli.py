"""``underway dashboard`` in a subprocess: never without a credential, and serving with one."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance._procs import wait_for
from tests.acceptance.test_cli import HERE, _env, assert_one_line_error, underway
from underway.jobs import Jobs

pytestmark = pytest.mark.acceptance

TOKEN = "cli-token-0123456789abcdef"


class Dashboard:
    """An ``underway dashboard`` subprocess with its output in a file."""

    def __init__(self, tmp_path: Path, *args: str, env: dict[str, str]) -> None:
        self.log_path = tmp_path / "dashboard.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "underway.cli", "dashboard", *args],
            cwd=HERE,
            env={**_env(), **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def address(self) -> str | None:
        """``http://host:port`` once it listens."""
        match = re.search(r"underway dashboard at (http://127\.0\.0\.1:\d+)/", self.log)
        if match is None and self.proc.poll() is not None:
            raise AssertionError(f"the dashboard exited ({self.proc.returncode}):\n{self.log}")
        return match.group(1) if match else None

    def stop(self, timeout: float = 30.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def reap(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[Dashboard]]:
    made: list[Dashboard] = []
    yield made
    for board in made:
        board.reap()


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
    """GET ``url`` without following redirects: status, body, headers."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode(), dict(error.headers)


@pytest.fixture
def database(url: str, client: Jobs) -> str:
    client.migrate_sync()
    return url


def test_refuses_to_start_without_a_credential(database: str) -> None:
    result = underway("dashboard", "--database", database)
    assert_one_line_error(
        result, 2, "the dashboard needs a credential: set UNDERWAY_DASHBOARD_TOKEN"
    )


def test_refuses_an_open_address_without_a_credential(database: str) -> None:
    result = underway("dashboard", "--database", database, "--host", "0.0.0.0")
    assert_one_line_error(
        result, 2, "needs a credential (and never on 0.0.0.0, beyond this machine)"
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"UNDERWAY_DASHBOARD_TOKEN": "short"}, "token must be a string of at least 16"),
        ({"UNDERWAY_DASHBOARD_USER": "ops"}, "UNDERWAY_DASHBOARD_PASSWORD is not set"),
        (
            {"UNDERWAY_DASHBOARD_TOKEN": TOKEN, "UNDERWAY_DASHBOARD_USER": "ops"},
            "not both",
        ),
    ],
    ids=["short-token", "user-alone", "both"],
)
def test_refuses_a_bad_credential(
    tmp_path: Path, database: str, env: dict[str, str], message: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "underway.cli", "dashboard", "--database", database],
        cwd=HERE,
        env={**_env(), **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert_one_line_error(result, 2, message)


def test_serves_healthz_and_pages_with_the_token_only(
    tmp_path: Path, database: str, started: list[Dashboard]
) -> None:
    board = Dashboard(
        tmp_path,
        *("--database", database, "--port", "0"),
        env={"UNDERWAY_DASHBOARD_TOKEN": TOKEN},
    )
    started.append(board)
    base = wait_for(board.address, timeout=60, what="the dashboard to listen")
    status, body, _ = fetch(f"{base}/healthz")
    assert status == 401
    assert TOKEN not in body
    status, body, _ = fetch(f"{base}/healthz", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    assert json.loads(body)["ok"] is True
    status, _, headers = fetch(f"{base}/jobs?token={TOKEN}")
    assert status == 303
    assert headers["location"] == "/jobs"
    cookie = headers["set-cookie"].split(";")[0]
    assert "underway_session=" in cookie
    assert TOKEN not in cookie
    status, body, headers = fetch(f"{base}/jobs", {"Cookie": cookie})
    assert status == 200
    assert "<h1>Jobs</h1>" in body
    assert headers["x-frame-options"] == "DENY"
    assert board.stop() == 0, board.log
    assert "Traceback" not in board.log


def test_read_only_refuses_actions(tmp_path: Path, database: str, started: list[Dashboard]) -> None:
    board = Dashboard(
        tmp_path,
        *("--database", database, "--port", "0", "--read-only"),
        env={"UNDERWAY_DASHBOARD_USER": "ops", "UNDERWAY_DASHBOARD_PASSWORD": "correct horse"},
    )
    started.append(board)
    base = wait_for(board.address, timeout=60, what="the dashboard to listen")
    status, _, headers = fetch(f"{base}/jobs")
    assert status == 401
    assert headers["www-authenticate"].startswith("Basic")
    auth = {"Authorization": "Basic b3BzOmNvcnJlY3QgaG9yc2U="}  # ops:correct horse
    status, body, _ = fetch(f"{base}/jobs", auth)
    assert status == 200
    assert "read-only" in body
    request = urllib.request.Request(
        f"{base}/jobs/actions",
        data=b"do=retry+matching",
        headers={**auth, "Content-Type": "application/x-www-form-urlencoded"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403
    refused.value.close()
    assert board.stop() == 0, board.log


def test_a_port_in_use_is_an_error_without_a_traceback(database: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [sys.executable, "-m", "underway.cli", "dashboard", "--database", database]
        result = subprocess.run(
            [*command, "--port", str(port)],
            cwd=HERE,
            env={**_env(), "UNDERWAY_DASHBOARD_TOKEN": TOKEN},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "address already in use" in result.stderr  # the server's log says why
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"Error: cannot listen on 127.0.0.1:{port}"), result.stderr
