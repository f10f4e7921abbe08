"""The overview pages (queues, nodes, cron, charts, pipelines) on both engines: real data,
the queue actions, their refusals, and bad input."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from underway import _telemetry as telemetry
from underway import dashboard
from underway.dashboard import _activity_pages
from underway.errors import ConfigError
from underway.jobs import Job, Jobs
from underway.pipelines import BatchInfo, DummyProducer, Message, Pipeline
from underway.pipelines.stats import PipelineStats

from ..conftest import Database, MakeJobs, wait_for_state, wait_until
from .conftest import BEARER, READ_TOKEN, TOKEN, Board, client_of, csrf_of

HOSTILE = "<script>alert(1)</script>"


@pytest.fixture
async def node(make_jobs: MakeJobs, board: Board) -> AsyncIterator[Jobs]:
    """A node on the dashboard's database running queues default (2) and mail (1), with a
    worker that completes and one that always fails (discarded at once)."""
    app = make_jobs(node_name="node-a", queues={"default": 2, "mail": 1})

    @app.worker(name="pages.ok")
    async def ok(job: Job[Any]) -> None:
        return None

    @app.worker(name="pages.boom", queue="mail", max_attempts=1)
    async def boom(job: Job[Any]) -> None:
        raise RuntimeError("boom")

    async with app:
        yield app


@pytest.fixture
def actions() -> Iterator[list[tuple[Mapping[str, Any], Mapping[str, Any]]]]:
    """The ``dashboard.action`` events emitted during the test."""
    seen: list[tuple[Mapping[str, Any], Mapping[str, Any]]] = []
    token = telemetry.attach(lambda e, m, d: seen.append((m, d)), prefix="dashboard.action")
    yield seen
    telemetry.detach(token)


def _producer(app: Jobs, queue: str) -> Any:
    assert app.node is not None
    return app.node.producers[queue]


async def _run_jobs(node: Jobs) -> None:
    """Three completed jobs in default, one discarded in mail."""
    done = [await node.workers["pages.ok"].enqueue({}) for _ in range(3)]
    done.append(await node.workers["pages.boom"].enqueue({}))
    for job in done:
        await wait_for_state(node, job.id)


async def test_queues_show_counts_finished_jobs_and_each_node(
    board: Board, node: Jobs, database: Database
) -> None:
    await _run_jobs(node)
    board.add("available", queue="reports", scheduled_at=time.time() + 3600)
    board.add("scheduled", queue="reports", scheduled_at=time.time() + 3600)
    await wait_until(lambda: all(q.nodes for q in node.queues_sync() if q.name == "mail"))

    page = await board.get("/queues")
    assert page.status_code == 200
    text = page.text
    for name in ("default", "mail", "reports"):
        assert f'href="/jobs?queue={name}"' in text
    assert 'href="/jobs?queue=reports&amp;state=scheduled">1</a>' in text
    assert "node-a 0/2" in text
    assert "node-a 0/1" in text
    assert '<td class="num outcome-completed">3</td>' in text
    assert '<td class="num outcome-discarded">1</td>' in text
    assert 'action="/queues/mail/pause"' in text
    assert 'action="/queues/mail/scale"' in text
    assert "no live node" in text  # reports: waiting jobs, no node runs it
    live = await board.client.get("/queues", headers={**BEARER, "X-Underway-Live": "1"})
    assert live.status_code == 200
    assert "<html" not in live.text
    assert "node-a 0/2" in live.text


async def test_pause_resume_and_scale_reach_the_node_and_are_told(
    board: Board, node: Jobs, actions: list[Any]
) -> None:
    producer = _producer(node, "default")
    response = await board.post("/queues/default/pause")
    assert response.status_code == 303
    assert response.headers["location"] == "/queues"
    assert "queue default paused on every node" in (await board.get("/queues")).text
    await wait_until(lambda: producer.paused, message="the node paused default")
    page = await wait_until(
        lambda: _page_when(board, "/queues", "badge-paused"), message="shown paused"
    )
    assert 'action="/queues/default/resume"' in page
    assert "queue default paused on every node" not in page  # a flash is shown once

    assert (await board.post("/queues/default/resume")).status_code == 303
    await wait_until(lambda: not producer.paused, message="the node resumed default")
    assert (await board.post("/queues/default/scale", {"limit": " 5 "})).status_code == 303
    await wait_until(lambda: producer.limit == 5, message="the node scaled default")

    told = [(d["action"], d["target"], d["queue"], d.get("limit"), d["who"]) for _, d in actions]
    assert told == [
        ("pause", "queue", "default", None, "token"),
        ("resume", "queue", "default", None, "token"),
        ("scale", "queue", "default", 5, "token"),
    ]
    assert all(m == {"count": 1} for m, _ in actions)


async def _page_when(board: Board, path: str, needle: str) -> str | None:
    response = await board.get(path)
    return response.text if needle in response.text else None


async def test_actions_are_refused_without_act_access_or_csrf_token(
    board: Board, node: Jobs, actions: list[Any]
) -> None:
    reader = dashboard.app(node, auth=dashboard.token_auth(READ_TOKEN, access="read"))
    async with client_of(reader) as client:
        read = {"Authorization": f"Bearer {READ_TOKEN}"}
        page = await client.get("/queues", headers=read)
        assert page.status_code == 200
        assert 'action="/queues/default/pause"' not in page.text  # no buttons to press
        form = {"content-type": "application/x-www-form-urlencoded", **read}
        refused = await client.post("/queues/default/pause", content="csrf_token=x", headers=form)
        assert refused.status_code == 403
    assert (await board.post("/queues/default/pause", csrf="forged")).status_code == 403
    no_token = await board.client.post(
        "/queues/default/pause",
        content="limit=3",
        headers={**BEARER, "content-type": "application/x-www-form-urlencoded"},
    )
    assert no_token.status_code == 403
    await asyncio.sleep(0.3)  # a signal would have reached the node by now
    assert not _producer(node, "default").paused
    assert actions == []


@pytest.mark.parametrize(
    ("path", "data", "status", "reason"),
    [
        ("/queues/nope/pause", {}, 400, "no queue &#39;nope&#39; (the queues are: default)"),
        ("/queues/default/scale", {"limit": "0"}, 400, "got &#39;0&#39;"),
        ("/queues/default/scale", {"limit": "-2"}, 400, "got &#39;-2&#39;"),
        ("/queues/default/scale", {"limit": "abc"}, 400, "got &#39;abc&#39;"),
        ("/queues/default/scale", {"limit": "2.5"}, 400, "got &#39;2.5&#39;"),
        ("/queues/default/scale", {"limit": "100001"}, 400, "from 1 to 100,000"),
        ("/queues/default/scale", {"limit": "9" * 5000}, 400, "from 1 to 100,000"),
        ("/queues/default/scale", {}, 400, "limit must be a whole number from 1 to 100,000"),
        ("/queues/default/drop", {}, 404, "no queue action &#39;drop&#39;"),
    ],
)
async def test_bad_queue_actions_get_the_reason(
    board: Board, actions: list[Any], path: str, data: dict[str, str], status: int, reason: str
) -> None:
    response = await board.post(path, data)
    assert response.status_code == status
    assert reason in response.text
    assert actions == []


async def test_nodes_show_heartbeat_leader_and_queues(
    board: Board, node: Jobs, database: Database
) -> None:
    stale = time.time() - 600
    database.add_node("gone-node", started_at=stale, heartbeat_at=stale)
    database.sql(
        "UPDATE underway_nodes SET meta = ? WHERE name = ?",
        json.dumps({"queues": {"x": 1}, "host": HOSTILE}),
        "gone-node",
    )
    text = await wait_until(
        lambda: _page_when(board, "/nodes", "badge-leader"), message="node-a leads"
    )
    assert "node-a" in text
    assert "default 0/2" in text
    assert "mail 0/1" in text
    assert "badge-dead" in text  # gone-node is silent
    assert "x ?/1" in text  # an older node: running not reported
    assert HOSTILE not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


async def test_cron_shows_entries_with_last_and_next_slot(make_jobs: MakeJobs) -> None:
    app = make_jobs()
    app.migrate_sync()

    @app.worker(name="pages.report")
    def report(job: Job[Any]) -> None:
        pass

    entry = app.add_cron("*/5 * * * *", report, args={"note": HOSTILE})
    app.add_cron("@reboot", report, queue="mail")
    web = dashboard.app(app, auth=dashboard.token_auth(TOKEN))
    async with client_of(web) as client:
        text = (await client.get("/cron", headers=BEARER)).text
        assert "*/5 * * * *" in text
        assert "pages.report" in text
        assert "never" in text
        assert "when the leader next starts" in text
        assert HOSTILE not in text
        slot = float(int(time.time() // 300) * 300)
        spec = entry.spec(meta_extra={"cron": entry.key, "cron_slot": slot})
        assert await app.engine.insert_for_slot(entry.key, slot, spec) is not None
        text = (await client.get("/cron", headers=BEARER)).text
        shown = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(slot))
        assert shown in text
        upcoming = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(slot + 300))
        assert upcoming in text


async def test_charts_draw_finished_jobs_per_queue(board: Board, node: Jobs) -> None:
    await _run_jobs(node)
    page = await board.get("/charts")
    assert page.status_code == 200
    text = page.text
    assert text.count("<svg") >= 3  # all queues, default, mail
    assert "<polyline" in text
    assert "completed: 3" in text  # all queues, and default
    assert "failed or discarded: 1" in text
    assert 'aria-label="mail"' in text
    one = await board.get("/charts", params={"range": "24h", "queue": "mail"})
    assert one.status_code == 200
    assert 'aria-label="mail"' in one.text
    assert 'aria-label="default"' not in one.text
    assert "last 24 hours" in one.text
    empty = await board.get("/charts", params={"range": "7d", "queue": "elsewhere"})
    assert "No job finished in this range." in empty.text


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"range": "2h"}, "range must be one of 1h, 6h, 24h, 7d, got &#39;2h&#39;"),
        ({"queue": "<b>"}, "queue name must be 1-128 letters"),
    ],
)
async def test_charts_refuse_bad_input(board: Board, params: dict[str, str], reason: str) -> None:
    response = await board.get("/charts", params=params)
    assert response.status_code == 400
    assert reason in response.text
    assert "<b>" not in response.text


@pytest.fixture
def pipeline() -> Pipeline:
    def handle(message: Message) -> Message:
        if message.data == "bad":
            raise ValueError("bad")
        if message.data == "batch":
            message.put_batcher("files")
        return message

    def handle_batch(batcher: str, batch: list[Message], info: BatchInfo) -> None:
        return None

    return Pipeline(
        producer=DummyProducer(),
        handle_message=handle,
        batchers={"files": {"batch_size": 2, "batch_timeout": 0.05}},
        handle_batch=handle_batch,
        rate_limit=(100, 1.0),
        name=f"orders{HOSTILE}",
    )


async def test_pipelines_show_each_stage(jobs: Jobs, pipeline: Pipeline) -> None:
    web = dashboard.app(jobs, auth=dashboard.token_auth(TOKEN), pipelines=[pipeline])
    async with client_of(web) as client:
        first = await client.get("/queues", headers=BEARER)
        stats: PipelineStats = web.state.dashboard.extra["pipeline_stats"]
        try:
            assert first.status_code == 200
            assert stats.attached
            producer = pipeline._producers[0]
            assert isinstance(producer, DummyProducer)
            async with pipeline:
                producer.push("a", "bad", "batch", "batch", "c")
                await producer.acknowledger.wait_for(5)
                text = (await client.get("/pipelines", headers=BEARER)).text
            assert "badge-running" in text
            assert "in flight" in text.lower()
            assert "100 per 1.0s" in text
            assert "batcher <strong>files</strong>" in text
            assert "1 (0 failed), size 2–2, mean 2.0" in text
            assert '<td class="num outcome-failed">1</td>' in text  # "bad"
            assert HOSTILE not in text
            assert "orders&lt;script&gt;" in text
            stopped = (await client.get("/pipelines", headers=BEARER)).text
            assert "badge-stopped" in stopped
        finally:
            stats.detach()


async def test_pipelines_page_without_pipelines_says_so(board: Board) -> None:
    response = await board.get("/pipelines")
    assert response.status_code == 200
    assert "No pipeline was given to this dashboard" in response.text


async def test_pipelines_are_counted_from_when_the_dashboard_is_made(
    jobs: Jobs, pipeline: Pipeline
) -> None:
    web = dashboard.app(jobs, auth=dashboard.token_auth(TOKEN), pipelines=[pipeline])
    stats: PipelineStats = web.state.dashboard.extra["pipeline_stats"]
    try:
        assert stats.attached
        producer = pipeline._producers[0]
        assert isinstance(producer, DummyProducer)
        async with pipeline:  # messages before any page is shown
            producer.push("a", "bad", "c")
            await producer.acknowledger.wait_for(3)
        async with client_of(web) as client:
            text = (await client.get("/pipelines", headers=BEARER)).text
        assert '<td class="num">2</td>' in text  # "a" and "c"
        assert '<td class="num outcome-failed">1</td>' in text  # "bad"
    finally:
        stats.detach()


def test_two_pipelines_of_one_name_are_refused(jobs: Jobs) -> None:
    same = [Pipeline(producer=DummyProducer(), handle_message=lambda m: m) for _ in range(2)]
    with pytest.raises(ConfigError, match="two pipelines are named 'pipeline'"):
        dashboard.app(jobs, auth=dashboard.token_auth(TOKEN), pipelines=same)


async def test_mounted_under_a_prefix_the_forms_keep_it(board: Board, node: Jobs) -> None:
    inner = dashboard.app(node, auth=dashboard.token_auth(TOKEN))
    outer = Starlette(routes=[Mount("/ops/underway", app=inner)])
    async with client_of(outer) as client:
        page = await client.get("/ops/underway/queues", headers=BEARER)
        assert page.status_code == 200
        assert 'action="/ops/underway/queues/default/pause"' in page.text
        assert 'href="/ops/underway/charts"' in page.text
        response = await client.post(
            "/ops/underway/queues/default/pause",
            content=f"csrf_token={csrf_of(page.text)}",
            headers={**BEARER, "content-type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 303
        assert response.headers["location"] == "/ops/underway/queues"
    await wait_until(lambda: _producer(node, "default").paused, message="paused via the mount")


def _seed_week(board: Board) -> None:
    """Per-minute counters over the last six days: two queues, three workers each, several
    minutes in most hours."""
    minute = "to_timestamp(?)" if board.database.postgres else "?"
    last = time.time() // 60 * 60
    for m in range(0, 6 * 24 * 60, 97):
        for k, (queue, worker) in enumerate(
            (q, w) for q in ("default", "mail") for w in ("w1", "w2", "w3")
        ):
            board.database.sql(
                "INSERT INTO underway_counters (minute, queue, worker, completed, failed,"
                f" discarded, cancelled) VALUES ({minute}, ?, ?, ?, ?, ?, ?)",
                last - 60 * m,
                queue,
                worker,
                (m + k) % 5,
                (m + k) % 3,
                (m + k) % 2,
                k % 2,
            )


async def test_the_7d_chart_and_the_queues_page_read_sums_from_the_database(
    board: Board, node: Jobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pages ask the database for one row per bucket and queue, and show what they
    showed when they added up every minute and worker themselves."""
    _seed_week(board)
    now = time.time()
    # The charts' clock stands still, so both reads cover the same hours.
    monkeypatch.setattr(_activity_pages, "time", SimpleNamespace(time=lambda: now))
    real = board.jobs.job_counters
    calls: list[tuple[dict[str, Any], int]] = []

    async def summed(**kwargs: Any) -> Any:
        rows = await real(**kwargs)
        calls.append((kwargs, len(rows)))
        return rows

    async def per_minute(**kwargs: Any) -> Any:
        minutes = await real(**{k: v for k, v in kwargs.items() if k not in ("bucket", "by")})
        calls.append(({}, len(minutes)))
        return minutes

    pages = {}
    for read in (summed, per_minute):
        monkeypatch.setattr(board.jobs, "job_counters", read)
        pages[read] = [await board.get(p, params=q) for p, q in _SUMMED_PAGES]
    (charts, by_hour), (queues, by_queue), (_, minutes), (_, queue_minutes) = calls
    assert (charts["bucket"], charts["by"]) == (3600, "queue")
    assert by_hour <= 168 * 2 < minutes  # an hour and queue a row, not a minute and worker
    assert (queues["bucket"], queues["by"]) == (3660, "queue")
    assert by_queue == 2 < queue_minutes
    for new, old in zip(pages[summed], pages[per_minute], strict=True):
        assert new.status_code == old.status_code == 200
        assert len(_figures(new.text)) == 1
        assert _figures(new.text) == _figures(old.text)
    assert pages[summed][0].text.count("<polyline") == 6  # all queues, default, mail


_SUMMED_PAGES = [("/charts", {"range": "7d"}), ("/queues", {})]


def _figures(page: str) -> list[str]:
    """The charts and the table of a page (its main element)."""
    return re.findall(r"<main.*?</main>", page, re.S)
