"""Login CSRF: the sign-in form's pre-session token, Fetch Metadata, and the JSON login's
strict content type, over HTTP against the app on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import func, select

from controller.accounts import Accounts, AuthSettings
from controller.api.app import create_app
from controller.config import ControllerSettings
from controller.store.base import Database
from controller.store.login_attempts import LoginAttemptRow

FAST = AuthSettings(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1)
PASSWORD = "correct horse battery staple"
REFUSED_FORM = "This sign-in form has expired or did not come from this site"


@pytest.fixture
async def client(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    await Accounts(db, FAST).add_user("mia", "manager", PASSWORD, contractor=None, actor="test")
    app = create_app(ControllerSettings(database_url=db.url), db, auth=FAST)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        yield client


def _token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', html)
    assert found is not None, "the sign-in form has no token"
    return found.group(1)


async def _form_token(client: httpx.AsyncClient) -> str:
    form = await client.get("/login")
    assert form.status_code == 200
    cookie = form.headers["set-cookie"]
    assert cookie.startswith("cctv_login=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/login" in cookie
    return _token(form.text)


def _credentials(token: str | None) -> dict[str, str]:
    data = {"username": "mia", "password": PASSWORD, "next": ""}
    if token is not None:
        data["csrf_token"] = token
    return data


async def _attempts(db: Database) -> int:
    async with db.session() as s:
        return int((await s.execute(select(func.count()).select_from(LoginAttemptRow))).scalar())


async def test_the_form_with_its_token_signs_in(client: httpx.AsyncClient) -> None:
    token = await _form_token(client)
    assert await _form_token(client) == token  # a second tab gets the same token
    signed_in = await client.post("/login", data=_credentials(token))
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/fleet"
    assert "cctv_session" in client.cookies
    assert (await client.get("/api/me")).json()["username"] == "mia"


async def test_a_post_without_the_token_is_refused_and_the_fresh_form_works(
    client: httpx.AsyncClient, db: Database
) -> None:
    await _form_token(client)
    before = await _attempts(db)
    refused = await client.post("/login", data=_credentials(None))
    assert refused.status_code == 403
    assert REFUSED_FORM in refused.text and 'value="mia"' in refused.text
    assert "cctv_session" not in client.cookies
    assert await _attempts(db) == before  # not a password attempt: nothing counted
    again = await client.post("/login", data=_credentials(_token(refused.text)))
    assert again.status_code == 303 and "cctv_session" in client.cookies


async def test_a_stale_form_without_its_cookie_works_on_the_second_try(
    client: httpx.AsyncClient,
) -> None:
    token = await _form_token(client)
    client.cookies.delete("cctv_login", path="/login")  # expired, or cleared meanwhile
    refused = await client.post("/login", data=_credentials(token))
    assert refused.status_code == 403 and REFUSED_FORM in refused.text
    assert refused.headers["set-cookie"].startswith("cctv_login=")  # a fresh form
    again = await client.post("/login", data=_credentials(_token(refused.text)))
    assert again.status_code == 303


async def test_a_token_from_another_browser_is_refused(
    client: httpx.AsyncClient, db: Database
) -> None:
    """What a cross-site page can do: it may load the form itself, but it cannot read or
    set the victim's cookie, so its token never matches the victim's cookie."""
    await _form_token(client)  # the victim's browser has its own cookie
    attacker = httpx.AsyncClient(transport=client._transport, base_url="http://t")
    async with attacker:
        attackers_token = await _form_token(attacker)
    forged = await client.post("/login", data=_credentials(attackers_token))
    assert forged.status_code == 403 and "cctv_session" not in client.cookies
    wrong = await client.post("/login", data=_credentials("0" * 64))
    assert wrong.status_code == 403


async def test_a_login_the_browser_marks_cross_site_is_refused(
    client: httpx.AsyncClient,
) -> None:
    token = await _form_token(client)
    for site in ("cross-site", "same-site"):
        refused = await client.post(
            "/login", data=_credentials(token), headers={"Sec-Fetch-Site": site}
        )
        assert refused.status_code == 403 and "another site" in refused.text
    api = await client.post(
        "/api/login",
        json={"username": "mia", "password": PASSWORD},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert api.status_code == 403 and "another site" in api.json()["detail"]
    assert "cctv_session" not in client.cookies
    same = await client.post(
        "/login", data=_credentials(token), headers={"Sec-Fetch-Site": "same-origin"}
    )
    assert same.status_code == 303


async def test_the_json_login_takes_json_only(client: httpx.AsyncClient) -> None:
    body = json.dumps({"username": "mia", "password": PASSWORD}).encode()
    # what a cross-site page can send without a CORS preflight
    for headers in (
        {"Content-Type": "text/plain"},
        {"Content-Type": "application/x-www-form-urlencoded"},
        {},  # a fetch() of a Blob without a type sends no Content-Type at all
    ):
        refused = await client.post("/api/login", content=body, headers=headers)
        assert refused.status_code == 415, headers
        assert refused.json()["detail"].startswith("Send the username and password as JSON")
        assert "cctv_session" not in client.cookies
    # JSON sent as multipart is not even a readable form
    multipart = {"Content-Type": "multipart/form-data; boundary=x"}
    refused = await client.post("/api/login", content=body, headers=multipart)
    assert refused.status_code == 400 and "cctv_session" not in client.cookies
    for content_type in ("application/json", "application/json; charset=utf-8"):
        ok = await client.post("/api/login", content=body, headers={"Content-Type": content_type})
        assert ok.status_code == 200, ok.text
