"""The dashboard's guard on both engines: closed without a credential, read-only access
that cannot act, CSRF and Origin checks on every action, the token turned into a session
cookie, and the security headers."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from starlette.requests import Request

from underway import dashboard
from underway.dashboard._security import _sign
from underway.errors import ConfigError
from underway.jobs import Jobs, JobState

from .conftest import BEARER, READ_TOKEN, TOKEN, Board, client_of

PAGES = ("/", "/jobs", "/jobs/1", "/healthz", "/metrics", "/nowhere")


def state(jobs: Jobs, job_id: int) -> JobState:
    job = jobs.get_job_sync(job_id)
    assert job is not None
    return job.state


@pytest.mark.parametrize("path", PAGES)
async def test_nothing_is_shown_without_a_credential(board: Board, path: str) -> None:
    board.add("completed")
    response = await board.client.get(path)
    assert response.status_code == 401
    assert "?token=" in response.text
    wrong = await board.client.get(path, headers={"Authorization": "Bearer " + "x" * 20})
    assert wrong.status_code == 401


async def test_an_action_without_a_credential_is_refused_before_anything(board: Board) -> None:
    job_id = board.add("discarded")
    csrf = await board.csrf()
    response = await board.client.post(
        f"/jobs/{job_id}/retry",
        data={"csrf_token": csrf},
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 401
    assert state(board.jobs, job_id) is JobState.DISCARDED


async def test_read_only_access_shows_pages_but_refuses_every_action(
    jobs: Jobs, board: Board
) -> None:
    job_id = board.add("discarded")
    app = dashboard.app(jobs, auth=dashboard.token_auth(READ_TOKEN, access="read"))
    headers = {"Authorization": f"Bearer {READ_TOKEN}"}
    async with client_of(app) as client:
        listing = await client.get("/jobs", headers=headers)
        assert listing.status_code == 200
        assert "read-only" in listing.text
        assert 'method="post"' not in listing.text  # no action offered
        detail = await client.get(f"/jobs/{job_id}", headers=headers)
        assert detail.status_code == 200
        assert 'method="post"' not in detail.text
        csrf = _token_of(client, app)
        for path, data in (
            (f"/jobs/{job_id}/retry", {}),
            (f"/jobs/{job_id}/delete", {}),
            ("/jobs/actions", {"do": "retry matching", "confirm": "yes"}),
        ):
            refused = await client.post(
                path,
                data={**data, "csrf_token": csrf},
                headers={**headers, "content-type": "application/x-www-form-urlencoded"},
            )
            assert refused.status_code == 403, path
            assert "read-only access" in refused.text
    assert state(jobs, job_id) is JobState.DISCARDED


def _token_of(client: Any, app: Any) -> str:
    """The CSRF token of ``client``'s cookie (what a page's forms would carry)."""
    cookie = client.cookies.get("underway_csrf")
    assert cookie, "no CSRF cookie set yet"
    secret: bytes = app.state.dashboard.secret
    return _sign(secret, cookie)


@pytest.mark.parametrize(
    "csrf", [None, "", "not-the-token", "A" * 43], ids=["missing", "empty", "wrong", "forged"]
)
async def test_an_action_without_the_right_csrf_token_is_refused(
    board: Board, csrf: str | None
) -> None:
    job_id = board.add("discarded")
    await board.csrf()  # the session has a CSRF cookie
    fields = {} if csrf is None else {"csrf_token": csrf}
    response = await board.client.post(
        f"/jobs/{job_id}/retry",
        data=fields,
        headers={**BEARER, "content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 403
    assert "CSRF token" in response.text
    assert state(board.jobs, job_id) is JobState.DISCARDED


async def test_a_csrf_token_of_another_browser_is_refused(jobs: Jobs, board: Board) -> None:
    job_id = board.add("discarded")
    theirs = await board.csrf()
    app = dashboard.app(jobs, auth=dashboard.token_auth(TOKEN))
    async with client_of(app) as other:
        await other.get("/jobs", headers=BEARER)  # a cookie of its own
        response = await other.post(
            f"/jobs/{job_id}/retry",
            data={"csrf_token": theirs},
            headers={**BEARER, "content-type": "application/x-www-form-urlencoded"},
        )
    assert response.status_code == 403
    assert state(board.jobs, job_id) is JobState.DISCARDED


async def test_a_post_without_a_csrf_cookie_is_refused(board: Board) -> None:
    job_id = board.add("discarded")
    csrf = await board.csrf()
    board.client.cookies.clear()
    response = await board.post(f"/jobs/{job_id}/retry", csrf=csrf)
    assert response.status_code == 403
    assert state(board.jobs, job_id) is JobState.DISCARDED


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "https://evil.example"},
        {"origin": "null"},
        {"sec-fetch-site": "cross-site"},
    ],
    ids=["other-origin", "null-origin", "cross-site"],
)
async def test_an_action_from_another_site_is_refused(
    board: Board, headers: dict[str, str]
) -> None:
    job_id = board.add("discarded")
    response = await board.post(f"/jobs/{job_id}/retry", headers=headers)
    assert response.status_code == 403
    assert "another site" in response.text
    assert state(board.jobs, job_id) is JobState.DISCARDED


async def test_an_action_from_the_dashboards_own_origin_passes(board: Board) -> None:
    job_id = board.add("discarded")
    response = await board.post(
        f"/jobs/{job_id}/retry", headers={"origin": "http://dashboard.test"}
    )
    assert response.status_code == 303
    assert state(board.jobs, job_id) is JobState.AVAILABLE


@pytest.mark.parametrize(
    "forwarded",
    ["board.example.com", "board.example.com, inner-proxy:8080", "edge.example, board.example.com"],
)
async def test_an_action_through_proxies_that_forward_the_host_passes(
    board: Board, forwarded: str
) -> None:
    job_id = board.add("discarded")
    response = await board.post(
        f"/jobs/{job_id}/retry",
        headers={"origin": "https://board.example.com", "x-forwarded-host": forwarded},
    )
    assert response.status_code == 303
    assert state(board.jobs, job_id) is JobState.AVAILABLE


async def test_a_forwarded_host_does_not_admit_a_site_it_does_not_name(board: Board) -> None:
    job_id = board.add("discarded")
    response = await board.post(
        f"/jobs/{job_id}/retry",
        headers={"origin": "https://evil.example", "x-forwarded-host": "board.example.com, "},
    )
    assert response.status_code == 403
    assert state(board.jobs, job_id) is JobState.DISCARDED


async def test_get_never_changes_state_and_other_methods_are_refused(board: Board) -> None:
    job_id = board.add("discarded")
    assert (await board.get(f"/jobs/{job_id}/retry")).status_code == 405
    assert (await board.get("/jobs/actions?do=retry+matching&confirm=yes")).status_code == 404
    csrf = await board.csrf()
    put = await board.client.put(
        f"/jobs/{job_id}/retry",
        content=f"csrf_token={csrf}",
        headers={**BEARER, "content-type": "application/x-www-form-urlencoded"},
    )
    assert put.status_code == 405
    assert state(board.jobs, job_id) is JobState.DISCARDED


async def test_an_action_must_be_a_url_encoded_form(board: Board) -> None:
    job_id = board.add("discarded")
    csrf = await board.csrf()
    response = await board.client.post(
        f"/jobs/{job_id}/retry", json={"csrf_token": csrf}, headers=BEARER
    )
    assert response.status_code == 415
    huge = await board.client.post(
        f"/jobs/{job_id}/retry",
        content="csrf_token=" + csrf + "&pad=" + "x" * 1_100_000,
        headers={**BEARER, "content-type": "application/x-www-form-urlencoded"},
    )
    assert huge.status_code == 413
    assert state(board.jobs, job_id) is JobState.DISCARDED


async def test_a_token_in_the_address_becomes_a_session_cookie(board: Board) -> None:
    response = await board.client.get(f"/jobs?state=completed&token={TOKEN}")
    assert response.status_code == 303
    assert response.headers["location"] == "/jobs?state=completed"
    cookie = next(
        v for k, v in response.headers.multi_items() if k == "set-cookie" and "session" in v
    )
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert TOKEN not in cookie
    page = await board.client.get("/jobs?state=completed")  # the cookie alone
    assert page.status_code == 200
    board.client.cookies.clear()
    assert (await board.client.get("/jobs")).status_code == 401
    wrong = await board.client.get("/jobs?token=" + "y" * 24)
    assert wrong.status_code == 401


async def test_basic_auth_asks_the_browser_and_names_who_acts(jobs: Jobs, database: Any) -> None:
    app = dashboard.app(jobs, auth=dashboard.basic_auth("ops", "correct horse"))
    async with client_of(app) as client:
        asked = await client.get("/jobs")
        assert asked.status_code == 401
        assert asked.headers["www-authenticate"].startswith("Basic realm=")
        good = "Basic " + base64.b64encode(b"ops:correct horse").decode()
        bad = "Basic " + base64.b64encode(b"ops:wrong horse").decode()
        assert (await client.get("/jobs", headers={"Authorization": bad})).status_code == 401
        garbled = {"Authorization": "Basic %%%"}
        assert (await client.get("/jobs", headers=garbled)).status_code == 401
        page = await client.get("/jobs", headers={"Authorization": good})
        assert page.status_code == 200
        assert ">ops<" in page.text


@pytest.mark.parametrize(
    "header",
    [
        b"Basic \xe9\xe9",  # not base64's alphabet, nor ASCII
        b"Basic",
        b"Basic " + base64.b64encode(b"no colon"),
        b"Basic " + base64.b64encode(b"ops:\xff\xfe"),  # not UTF-8
        b"Basic " + base64.b64encode(b"ops:correct horse") + b"\xe9",
        b"Bearer \xe9\xe9",
    ],
)
async def test_a_malformed_authorization_header_is_a_401(jobs: Jobs, header: bytes) -> None:
    app = dashboard.app(jobs, auth=dashboard.basic_auth("ops", "correct horse"))
    async with client_of(app) as client:
        response = await client.get("/jobs", headers=[(b"authorization", header)])
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Basic realm=")


async def test_a_custom_async_auth_decides_per_request(jobs: Jobs) -> None:
    async def auth(request: Request) -> dashboard.Access:
        user = request.headers.get("x-user", "")
        if user == "admin":
            return dashboard.Access.act(user)
        if user:
            return dashboard.Access.read(user)
        return dashboard.Access.none()

    app = dashboard.app(jobs, auth=auth)
    async with client_of(app) as client:
        assert (await client.get("/jobs")).status_code == 401
        page = await client.get("/jobs", headers={"x-user": "viewer"})
        assert page.status_code == 200
        assert "viewer · read-only" in page.text
        page = await client.get("/jobs", headers={"x-user": "admin"})
        assert 'method="post"' in page.text


async def test_read_only_and_allow_all_are_explicit_choices(jobs: Jobs) -> None:
    async with client_of(dashboard.app(jobs, auth=dashboard.read_only)) as client:
        page = await client.get("/jobs")
        assert page.status_code == 200
        assert 'method="post"' not in page.text
    async with client_of(dashboard.app(jobs, auth=dashboard.allow_all)) as client:
        page = await client.get("/jobs")
        assert 'method="post"' in page.text


async def test_every_response_carries_the_security_headers(board: Board) -> None:
    for path in ("/jobs", "/static/dashboard.css", "/nowhere"):
        response = await board.get(path)
        headers = response.headers
        assert "script-src 'self'" in headers["content-security-policy"], path
        assert "unsafe-inline" not in headers["content-security-policy"]
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "same-origin"
    assert (await board.get("/jobs")).headers["cache-control"] == "no-store"
    unauthorized = await board.client.get("/jobs")
    assert unauthorized.headers["x-frame-options"] == "DENY"


async def test_the_pages_carry_no_inline_script_or_style(board: Board) -> None:
    job_id = board.add("discarded", errors=[{"attempt": 1, "at": 1.0, "error": "boom"}])
    for path in ("/jobs", f"/jobs/{job_id}", "/jobs?state=nope"):
        text = (await board.get(path)).text
        assert "<script>" not in text
        assert "<script src=" in text
        assert "style=" not in text
        assert "<style" not in text
        assert " on" + "click=" not in text


def test_the_app_needs_an_auth_and_checks_its_options(jobs: Jobs) -> None:
    with pytest.raises(ConfigError, match="auth is required: the dashboard is closed"):
        dashboard.app(jobs)
    with pytest.raises(ConfigError, match="auth must be a callable"):
        dashboard.app(jobs, auth="token")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"jobs must be an underway\.jobs\.Jobs app"):
        dashboard.app(object(), auth=dashboard.allow_all)  # type: ignore[arg-type]
    bad: list[tuple[dict[str, Any], str]] = [
        ({"page_size": 0}, "page_size must be a whole number from 1 to 500"),
        ({"page_size": True}, "page_size must be"),
        ({"live_interval": -1}, r"live_interval must be seconds >= 0"),
        ({"secret": "short"}, "secret must be at least 16 bytes"),
        ({"title": " "}, "title must be a non-empty string"),
        ({"pipelines": [object()]}, "pipelines must hold Pipeline objects"),
        ({"pipelines": 3}, "pipelines must be a list of Pipeline"),
    ]
    for options, message in bad:
        with pytest.raises(ConfigError, match=message):
            dashboard.app(jobs, auth=dashboard.allow_all, **options)
    with pytest.raises(ConfigError, match="at least 16 characters"):
        dashboard.token_auth("short")
    with pytest.raises(ConfigError, match="access must be 'read' or 'act'"):
        dashboard.token_auth(TOKEN, access="admin")
    with pytest.raises(ConfigError, match="user must be a name without ':'"):
        dashboard.basic_auth("a:b", "long enough")
    with pytest.raises(ConfigError, match="password must be at least 8"):
        dashboard.basic_auth("ops", "short")


async def test_an_auth_that_returns_something_else_is_an_error(jobs: Jobs) -> None:
    app = dashboard.app(jobs, auth=lambda request: True)  # type: ignore[arg-type,return-value]
    async with client_of(app) as client:
        with pytest.raises(TypeError, match="not an Access"):
            await client.get("/jobs")


async def test_static_files_need_no_credential_but_a_post_to_them_does(board: Board) -> None:
    assert (await board.client.get("/static/dashboard.css")).status_code == 200
    posted = await board.client.post(
        "/static/dashboard.css",
        content="a=1",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert posted.status_code == 401


@pytest.mark.parametrize("path", ["/%2Fevil.example", "/%2F%2Fevil.example/jobs", "//evil.example"])
async def test_the_token_login_redirects_only_inside_the_dashboard(board: Board, path: str) -> None:
    response = await board.client.get(f"http://dashboard.test{path}?token={TOKEN}")
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith("/")
    assert not location.startswith(("//", "/\\")), location


def _set_cookies(response: Any) -> dict[str, str]:
    found = [v for k, v in response.headers.multi_items() if k == "set-cookie"]
    return {v.partition("=")[0]: v for v in found}


@pytest.mark.parametrize(
    ("base", "headers", "secure"),
    [
        ("https://dashboard.test", {}, True),
        ("http://dashboard.test", {"x-forwarded-proto": "https"}, True),  # a TLS proxy
        ("http://dashboard.test", {"x-forwarded-proto": "https,http"}, True),
        ("http://dashboard.test", {}, False),
        ("http://dashboard.test", {"x-forwarded-proto": "http"}, False),
    ],
)
async def test_cookies_are_secure_when_the_browser_speaks_https(
    board: Board, base: str, headers: dict[str, str], secure: bool
) -> None:
    job_id = board.add("discarded")
    app = dashboard.app(board.jobs, auth=dashboard.token_auth(TOKEN))
    async with client_of(app, base_url=base) as client:
        login = await client.get(f"/jobs?token={TOKEN}", headers=headers)
        cookies = _set_cookies(login)
        assert set(cookies) == {"underway_session", "underway_csrf"}
        csrf = cookies["underway_csrf"].partition("=")[2].partition(";")[0]
        client.cookies.clear()  # (an http client keeps no Secure cookie: sent by hand)
        action = await client.post(
            f"/jobs/{job_id}/retry",
            content=f"csrf_token={_sign(app.state.dashboard.secret, csrf)}",
            headers={
                **headers,
                **BEARER,
                "cookie": f"underway_csrf={csrf}",
                "content-type": "application/x-www-form-urlencoded",
            },
        )
        assert action.status_code == 303
        cookies |= _set_cookies(action)
    assert "underway_flash" in cookies
    for name, cookie in cookies.items():
        assert ("; Secure" in cookie) is secure, (name, cookie)
