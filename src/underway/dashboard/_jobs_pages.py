"""The jobs pages: the list (filters, pages by id, bulk actions) and one job (its data,
attempts, timings; retry, cancel, delete)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from underway.dashboard._forms import JobQuery, job_id, job_query, parse_query_string
from underway.dashboard._pages import (
    BadRequest,
    NotFound,
    dashboard,
    emit_action,
    redirect,
    render,
    url,
)
from underway.dashboard._security import CSRF_FIELD, form
from underway.errors import ConfigError
from underway.jobs.engines.base import BULK_CANCEL_STATES, BULK_DELETE_STATES, BULK_RETRY_STATES
from underway.jobs.job import FINISHED_STATES, Job, JobState

__all__ = ["routes"]

ACTIONS = {"retry": BULK_RETRY_STATES, "cancel": BULK_CANCEL_STATES, "delete": BULK_DELETE_STATES}
_DONE = {"retry": "retried", "cancel": "cancelled", "delete": "deleted"}
_BULK_FIELDS = ("do", "id", "filters", "confirm", CSRF_FIELD)


def routes() -> list[BaseRoute]:
    """The jobs pages' routes."""
    return [
        Route("/jobs", jobs_page, name="jobs"),
        Route("/jobs/actions", bulk_action, methods=["POST"], name="jobs_action"),
        Route("/jobs/{job_id}", job_page, name="job"),
        Route("/jobs/{job_id}/{action}", job_action, methods=["POST"], name="job_action"),
    ]


async def jobs_page(request: Request) -> Response:
    """The jobs matching the query's filters, newest first, a page at a time."""
    board = dashboard(request)
    query = job_query(request.query_params.multi_items())
    size = board.page_size
    found = await board.jobs.list_jobs(limit=size + 1, before_id=query.before, **query.filters)
    page, more = found[:size], len(found) > size
    context = {
        "section": "jobs",
        "query": query,
        "jobs": page,
        "states": [s.value for s in JobState],
        "chosen_states": set(query.filters.get("state", ())),
        "older": url(request, "jobs", {**query.form, "before": page[-1].id}) if more else None,
        "newest": url(request, "jobs", query.form) if query.before is not None else None,
        "finished_states": FINISHED_STATES,
    }
    return render(request, "jobs.html", context)


async def job_page(request: Request) -> Response:
    """One job: its data, every attempt's error, timings and the actions its state allows."""
    job = await _job(request)
    context = {
        "section": "jobs",
        "job": job,
        "finished_at": job.completed_at or job.discarded_at or job.cancelled_at,
        "can": {name: job.state in states for name, states in ACTIONS.items()},
    }
    return render(request, "job.html", context)


async def _job(request: Request) -> Job[Any]:
    text = request.path_params["job_id"]
    if not text.isascii() or not text.isdigit():
        raise NotFound(f"{text!r} is not a job id")
    try:
        wanted = job_id(text)
    except BadRequest:
        raise NotFound(f"there is no job {text}") from None
    job = await dashboard(request).jobs.get_job(wanted)
    if job is None:
        raise NotFound(f"there is no job {wanted} (it may have been deleted or pruned)")
    return job


async def job_action(request: Request) -> Response:
    """Retry, cancel or delete one job, then back to its page (or the list, once deleted)."""
    action = request.path_params["action"]
    if action not in ACTIONS:
        raise NotFound(f"{action!r} is not an action; the actions are retry, cancel, delete")
    job = await _job(request)
    jobs = dashboard(request).jobs
    back = url(request, "job", job_id=job.id)
    if job.state not in ACTIONS[action]:
        emit_action(request, action, "job", count=0, ids=[job.id])
        states = ", ".join(s.value for s in ACTIONS[action])
        text = f"job {job.id} is {job.state.value}: {action} is for jobs that are {states}"
        return redirect(request, back, flash=text, kind="error")
    # The count comes from the statement that changed the job, not from reading it back:
    # a node may claim a retried job before any read could see it available.
    if action == "retry":
        count = await jobs.retry_all_jobs(id=job.id)
    elif action == "cancel":
        count = await jobs.cancel_all_jobs(id=job.id)
    else:
        count = await jobs.delete_all_jobs(id=job.id)
        back = url(request, "jobs") if count else back
    emit_action(request, action, "job", count=count, ids=[job.id])
    if not count:
        text = f"job {job.id} changed meanwhile and was not {_DONE[action]}"
        return redirect(request, back, flash=text, kind="error")
    return redirect(request, back, flash=f"job {job.id} {_DONE[action]}")


async def bulk_action(request: Request) -> Response:
    """Retry, cancel or delete the selected jobs, or every job matching the list's filters.

    Fields: ``do`` (``"<action> selected"`` or ``"<action> matching"``), ``id`` (the
    selected jobs), ``filters`` (the list's query string), ``confirm`` (``yes`` once an
    action on every job has been confirmed).
    """
    fields = form(request)
    do = str(fields.get("do", ""))
    action, _, scope = do.partition(" ")
    if action not in ACTIONS or scope not in ("selected", "matching"):
        raise BadRequest(
            "do must be '<action> selected' or '<action> matching', the actions being "
            f"retry, cancel and delete; got {do!r}"
        )
    unknown = sorted(set(fields.keys()) - set(_BULK_FIELDS))
    if unknown:
        raise BadRequest(f"unknown field {', '.join(map(repr, unknown))}")
    query = job_query(parse_query_string(str(fields.get("filters", ""))), page=False)
    back = url(request, "jobs", query.form)
    if scope == "selected":
        return await _on_selected(request, action, [str(i) for i in fields.getlist("id")], back)
    if not query.filters and fields.get("confirm") != "yes":
        return render(request, "confirm.html", {"section": "jobs", "action": action, "back": back})
    return await _on_matching(request, action, query, back)


async def _on_selected(request: Request, action: str, given: list[str], back: str) -> Response:
    ids = list(dict.fromkeys(job_id(i) for i in given))
    if not ids:
        return redirect(request, back, flash=f"no job selected to {action}", kind="error")
    count = await _bulk(request, action, {"id": ids})
    emit_action(request, action, "selected", count=count, ids=ids)
    return redirect(request, back, flash=f"{_jobs(count)} {_DONE[action]} of {len(ids)} selected")


async def _on_matching(request: Request, action: str, query: JobQuery, back: str) -> Response:
    count = await _bulk(request, action, query.filters)
    emit_action(request, action, "filter", count=count, filters=query.form)
    what = "matching the filters" if query.filters else "in all"
    return redirect(request, back, flash=f"{_jobs(count)} {_DONE[action]} ({what})")


async def _bulk(request: Request, action: str, filters: dict[str, Any]) -> int:
    jobs = dashboard(request).jobs
    call = {
        "retry": jobs.retry_all_jobs,
        "cancel": jobs.cancel_all_jobs,
        "delete": jobs.delete_all_jobs,
    }[action]
    try:
        return await call(all=not filters, **filters)
    except ConfigError as exc:
        raise BadRequest(str(exc)) from None


def _jobs(count: int) -> str:
    return f"{count} job" if count == 1 else f"{count} jobs"
