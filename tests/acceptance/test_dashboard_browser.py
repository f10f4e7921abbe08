"""The dashboard in a real browser: headless Chromium against ``underway dashboard`` and
two ``underway start`` nodes, all subprocesses on one SQLite file.

An operator signs in with the token, filters the jobs down to the discarded one, reads its
error, fixes the cause, retries it from its page and watches it complete; then pauses a
queue, sees every node pause it, and resumes it. On the way the test saves screenshots of
the jobs, job and queues pages to ``$UNDERWAY_SCREENSHOTS`` (default: the test's temporary
directory); ``make screenshots`` refreshes the README's images in docs/screenshots.

Chromium is the system's (Debian's ``chromium`` package), found at ``$UNDERWAY_CHROMIUM``
or as ``chromium`` on the PATH; Playwright downloads nothing. Without it the test is
skipped, except under ``CI=true`` or when screenshots are asked for, where that is a
failure.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    ConsoleMessage,
    Dialog,
    Locator,
    Page,
    Response,
    ViewportSize,
    expect,
    sync_playwright,
)

from tests.acceptance._procs import wait_for
from underway.jobs import Jobs, JobState

pytestmark = [pytest.mark.acceptance, pytest.mark.slow]

CHROMIUM_ENV = "UNDERWAY_CHROMIUM"
SCREENSHOTS_ENV = "UNDERWAY_SCREENSHOTS"
TOKEN = "browser-token-0123456789abcdef"  # the test's own throwaway token
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
# Every wait in the browser may take this long on a loaded machine (milliseconds). A page
# refreshes its live part every 5 s, and a node reports a pause at its next heartbeat.
WAIT_MS = 60_000

# The application the nodes and the dashboard load (``shop:jobs``), next to its database.
APP = '''\
"""A shop's background jobs."""

import asyncio
from pathlib import Path
from typing import Any

from underway.jobs import Jobs
from underway.jobs.job import Job

HERE = Path(__file__).parent
GATEWAY_UP = HERE / "gateway-up"  # the card gateway answers once this file exists

jobs = Jobs(
    f"sqlite:///{HERE / 'shop.db'}",
    queues={"default": 4, "mail": 3, "reports": 1},
    poll_interval=0.1,
    stage_interval=0.1,
    heartbeat_interval=0.5,
    rescue_after=30.0,
    leader_ttl=2.0,
    shutdown_grace=2.0,
)


class GatewayError(Exception):
    """The card gateway did not answer."""


@jobs.worker(name="shop.charge_card", max_attempts=1, tags=["billing"], record_result=True)
async def charge_card(job: Job[Any]) -> dict[str, Any]:
    if not GATEWAY_UP.exists():
        raise GatewayError(
            f"card gateway unreachable: order {job.args['order_id']} was not charged"
        )
    return {"charged_cents": job.args["amount_cents"], "currency": job.args["currency"]}


@jobs.worker(name="shop.sync_inventory", max_attempts=5, backoff=3600, tags=["warehouse"])
async def sync_inventory(job: Job[Any]) -> None:
    raise ConnectionError(f"warehouse API refused the connection (sku {job.args['sku']})")


@jobs.worker(name="shop.resize_image", record_result=True)
async def resize_image(job: Job[Any]) -> dict[str, Any]:
    return {"width": 640, "height": 480, "key": f"thumbs/{job.args['image']}"}


@jobs.worker(name="shop.send_receipt", queue="mail", record_result=True)
async def send_receipt(job: Job[Any]) -> dict[str, Any]:
    return {"to": job.args["email"], "status": "sent"}


@jobs.worker(name="shop.send_newsletter", queue="mail", tags=["marketing"])
async def send_newsletter(job: Job[Any]) -> None:
    return None


@jobs.worker(name="shop.export_ledger", queue="reports")
async def export_ledger(job: Job[Any]) -> None:
    await asyncio.sleep(3600)  # still running while the test looks; handed back at stop


@jobs.worker(name="shop.daily_report", queue="reports", record_result=True)
async def daily_report(job: Job[Any]) -> dict[str, Any]:
    return {"orders": 412, "revenue_cents": 1846300}


jobs.add_cron("0 6 * * *", daily_report, args={"format": "pdf"})
'''


def chromium() -> str:
    """The Chromium executable to drive, or skip (fail under ``CI=true``) without one."""
    given = os.environ.get(CHROMIUM_ENV)
    if given:
        if not (os.path.isfile(given) and os.access(given, os.X_OK)):
            pytest.fail(f"{CHROMIUM_ENV}={given!r} is not an executable file", pytrace=False)
        return given
    found = shutil.which("chromium")
    if found:
        return found
    reason = (
        "no chromium on the PATH: install Debian's chromium package (apt-get install "
        f"chromium) or set {CHROMIUM_ENV} to a Chromium executable"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: a missing browser is a failure)", pytrace=False)
    if os.environ.get(SCREENSHOTS_ENV):
        pytest.fail(f"{reason} ({SCREENSHOTS_ENV} asks for screenshots)", pytrace=False)
    pytest.skip(reason)


def screenshots(tmp_path: Path) -> Path:
    """Where the screenshots go: ``$UNDERWAY_SCREENSHOTS`` (made if missing) or tmp_path."""
    given = os.environ.get(SCREENSHOTS_ENV)
    folder = Path(given).resolve() if given else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Process:
    """An ``underway`` subprocess in its own process group, its output in a file."""

    def __init__(self, workdir: Path, label: str, *args: str, env: dict[str, str]) -> None:
        self.label = label
        self.log_path = workdir / f"{label}.log"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("UNDERWAY_")}
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "underway.cli", *args],
                cwd=workdir,
                env={**clean, "PYTHONUNBUFFERED": "1", **env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, and the exit status."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def reap(self) -> None:
        """Kill its whole process group if it still runs, and wait for it."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


def logs(processes: list[Process]) -> str:
    """Every process's exit status and the tail of its output, for failure messages."""
    return "\n".join(
        f"--- {p.label} (exit {p.proc.poll()}) ---\n{p.log[-3000:]}" for p in processes
    )


def load_app(path: Path) -> Any:
    """The app module at ``path``, imported under a name of its own (not in sys.modules)."""
    spec = importlib.util.spec_from_file_location("browser_shop_app", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def seed(jobs: Jobs) -> dict[str, int]:
    """A day's worth of jobs in three queues; returns the ids the scenario needs."""
    w = jobs.workers
    for day in ("2025-05-01", "2025-05-02"):
        w["shop.daily_report"].enqueue_sync({"day": day, "format": "pdf"})
    for n, email in enumerate(("ada@example.com", "grace@example.com", "linus@example.com")):
        w["shop.send_receipt"].enqueue_sync({"order_id": 1038 + n, "email": email})
    for image in ("boots-brown.jpg", "boots-black.jpg", "scarf-red.jpg", "hat-wool.jpg"):
        w["shop.resize_image"].enqueue_sync({"image": image, "sizes": [640, 1280]})
    for sku in ("BOOT-42-BRN", "SCARF-RED"):
        w["shop.sync_inventory"].enqueue_sync({"sku": sku, "warehouse": "north"})
    for n, segment in enumerate(("new customers", "returning", "lapsed")):
        w["shop.send_newsletter"].enqueue_sync(
            {"campaign": "spring-sale", "segment": segment}, schedule_in=3600.0 * (n + 2)
        )
    dropped = w["shop.send_newsletter"].enqueue_sync(
        {"campaign": "spring-sale", "segment": "test list"}, schedule_in=3600.0
    )
    jobs.cancel_job_sync(dropped.id)
    charge = w["shop.charge_card"].enqueue_sync(
        {"order_id": 1041, "amount_cents": 4999, "currency": "EUR", "card": "visa ****4242"},
        meta={"request_id": "req-7f3a9c"},
    )
    w["shop.send_receipt"].enqueue_sync({"order_id": 1042, "email": "margaret@example.com"})
    ledger = w["shop.export_ledger"].enqueue_sync({"month": "2025-04", "format": "csv"})
    return {"charge": charge.id, "ledger": ledger.id}


def settled(jobs: Jobs, ledger: int) -> bool:
    """Whether every seeded job has run, but for the ledger export, which runs on."""
    waiting = jobs.list_jobs_sync(state=["available", "executing"])
    return [(j.id, j.state) for j in waiting] == [(ledger, JobState.EXECUTING)]


def test_an_operator_retries_a_failed_job_and_pauses_a_queue(tmp_path: Path) -> None:
    executable = chromium()
    shots = screenshots(tmp_path)
    (tmp_path / "shop.py").write_text(APP)
    jobs: Jobs = load_app(tmp_path / "shop.py").jobs
    running: list[Process] = []
    try:
        jobs.migrate_sync()
        ids = seed(jobs)
        for node in ("shop-1", "shop-2"):
            args = ("start", "shop:jobs", "--node-name", node, "--stats-interval", "0")
            running.append(Process(tmp_path, node, *args, env={}))
        wait_for(
            lambda: settled(jobs, ids["ledger"]),
            timeout=60,
            what="the seeded jobs to run",
            interval=0.1,
            diagnose=lambda: logs(running),
        )
        board = Process(
            tmp_path,
            "dashboard",
            *("dashboard", "--app", "shop:jobs", "--port", "0"),
            env={"UNDERWAY_DASHBOARD_TOKEN": TOKEN},
        )
        running.append(board)
        base = wait_for(
            lambda: _address(board),
            timeout=60,
            what="the dashboard to listen",
            interval=0.1,
            diagnose=lambda: logs(running),
        )
        problems = _browse(executable, base, shots, ids["charge"], tmp_path / "gateway-up")
        assert problems == [], problems
        for process in reversed(running):
            assert process.stop() == 0, logs(running)
        for process in running:
            assert "Traceback" not in process.log, logs(running)
    finally:
        for process in running:
            process.reap()
        asyncio.run(jobs.engine.close())


def _address(board: Process) -> str | None:
    """``http://127.0.0.1:PORT`` once the dashboard says it listens."""
    match = re.search(r"underway dashboard at (http://127\.0\.0\.1:\d+)/", board.log)
    if match is None and board.proc.poll() is not None:
        raise AssertionError(f"the dashboard exited ({board.proc.returncode}):\n{board.log}")
    return match.group(1) if match else None


def _browse(executable: str, base: str, shots: Path, charge: int, fix: Path) -> list[str]:
    """Run the scenario in a headless Chromium; return the page errors it logged."""
    problems: list[str] = []
    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(WAIT_MS)
            page.on("console", _collect(problems))
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on("response", _failed(problems))
            _jobs_list(page, base, shots, charge)
            _job_detail(page, shots, charge, fix)
            _queues(page, shots)
        finally:
            browser.close()
    return problems


def _collect(problems: list[str]) -> Callable[[ConsoleMessage], None]:
    """A console listener keeping errors (a blocked script or style is one)."""

    def listen(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(f"console: {message.text}")

    return listen


def _failed(problems: list[str]) -> Callable[[Response], None]:
    """A response listener keeping every error status (a missing stylesheet is one)."""

    def listen(response: Response) -> None:
        if response.status >= 400:
            problems.append(f"{response.status} {response.request.method} {response.url}")

    return listen


def _jobs_list(page: Page, base: str, shots: Path, charge: int) -> None:
    """Sign in with the token, see every job, then filter down to the discarded one."""
    page.goto(f"{base}/jobs?token={TOKEN}")
    expect(page).to_have_url(f"{base}/jobs")  # the token left the address for a cookie
    expect(page.get_by_role("heading", name="Jobs", exact=True)).to_be_visible()
    rows = page.locator("table.jobs tbody tr")
    expect(rows.filter(has_text="shop.export_ledger")).to_contain_text("executing")
    page.screenshot(path=shots / "jobs.png")

    page.locator("input[name=state][value=discarded]").check()
    page.get_by_label("Queue").fill("default")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"/jobs\?.*state=discarded"))
    expect(page.locator("input[name=state][value=discarded]")).to_be_checked()
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("shop.charge_card")
    expect(rows).to_contain_text("card gateway unreachable")
    rows.get_by_role("link", name=str(charge), exact=True).click()


def _job_detail(page: Page, shots: Path, charge: int, fix: Path) -> None:
    """Read the job's error, fix its cause, retry it and watch it complete."""
    heading = page.get_by_role("heading", level=1)
    expect(heading).to_contain_text(f"Job {charge}")
    expect(heading.locator(".state")).to_have_text("discarded")
    error = page.locator("article.attempt").first
    expect(error).to_contain_text("Attempt 1")
    expect(error.locator(".error-text")).to_contain_text(
        "card gateway unreachable: order 1041 was not charged"
    )
    expect(error.locator(".traceback")).to_contain_text("GatewayError")
    page.screenshot(path=shots / "job.png", full_page=True)  # the traceback included

    fix.touch()  # the gateway answers again
    page.get_by_role("button", name="Retry", exact=True).click()
    expect(_flash(page)).to_have_text(f"job {charge} retried")
    expect(heading.locator(".state")).to_have_text("completed")  # live: no reload
    expect(page.get_by_role("heading", name="Result")).to_be_visible()
    expect(page.locator("pre").filter(has_text="charged_cents")).to_contain_text("4999")


def _queues(page: Page, shots: Path) -> None:
    """Pause the mail queue, see every node report it paused, and resume it."""
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Queues").click()
    expect(page.get_by_role("heading", name="Queues", exact=True)).to_be_visible()
    mail = _queue_row(page, "mail")
    expect(mail.locator(".node-share")).to_have_count(2)  # both nodes serve it

    asked: list[str] = []

    def accept(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    mail.get_by_role("button", name="Pause").click()
    expect(_flash(page)).to_have_text("queue mail paused on every node")
    assert asked == ["Pause queue mail on every node?"]
    expect(mail.locator(".badge-paused")).to_have_text("paused")  # once both nodes say so
    expect(_queue_row(page, "default").locator(".badge-paused")).to_have_count(0)
    page.screenshot(path=shots / "queues.png")

    mail.get_by_role("button", name="Resume").click()
    expect(_flash(page)).to_have_text("queue mail resumed on every node")
    expect(mail.locator(".badge-paused")).to_have_count(0)
    expect(mail.get_by_role("button", name="Pause")).to_be_visible()


def _queue_row(page: Page, name: str) -> Locator:
    link = page.get_by_role("link", name=name, exact=True)
    return page.locator("table.queues tbody tr").filter(has=link)


def _flash(page: Page) -> Locator:
    return page.locator(".flash")


# -- finding Chromium -------------------------------------------------------------------------


def test_a_chromium_given_that_is_not_an_executable_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CHROMIUM_ENV, str(tmp_path / "nowhere"))
    wanted = r"UNDERWAY_CHROMIUM=.*nowhere.* is not an executable file"
    with pytest.raises(pytest.fail.Exception, match=wanted):
        chromium()


def test_chromium_given_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    browser = tmp_path / "chromium"
    browser.write_text("#!/bin/sh\n")
    browser.chmod(0o755)
    monkeypatch.setenv(CHROMIUM_ENV, str(browser))
    assert chromium() == str(browser)


@pytest.mark.parametrize(
    ("env", "outcome", "why"),
    [
        ({}, pytest.skip.Exception, "install Debian's chromium package"),
        ({"CI": "true"}, pytest.fail.Exception, "CI=true: a missing browser is a failure"),
        ({SCREENSHOTS_ENV: "shots"}, pytest.fail.Exception, "asks for screenshots"),
    ],
    ids=["skipped", "ci-fails", "screenshots-fail"],
)
def test_without_chromium(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    outcome: type[BaseException],
    why: str,
) -> None:
    for name in (CHROMIUM_ENV, SCREENSHOTS_ENV, "CI"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PATH", str(tmp_path))  # no chromium on it
    with pytest.raises(outcome, match=re.escape(why)):
        chromium()
