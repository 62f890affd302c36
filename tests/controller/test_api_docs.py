"""The API reference: a page of this site behind sign-in, with the pages' security headers
and nothing from another origin; the OpenAPI document for signed-in callers only."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from controller.accounts import Accounts, AuthSettings
from controller.api.app import create_app
from controller.config import ControllerSettings
from controller.pages.render import SECURITY_HEADERS
from controller.store.base import Database

FAST = AuthSettings(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1)
PASSWORD = "correct horse battery staple"


@pytest.fixture
async def client(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    accounts = Accounts(db, FAST)
    await accounts.add_user("mia", "manager", PASSWORD, contractor=None, actor="test")
    await accounts.add_user("carl", "contractor", PASSWORD, contractor="Acme", actor="test")
    app = create_app(ControllerSettings(database_url=db.url), db, auth=FAST)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client


async def _sign_in(client: httpx.AsyncClient, username: str) -> None:
    response = await client.post("/api/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200


async def test_the_reference_is_a_page_of_this_site_behind_sign_in(
    client: httpx.AsyncClient,
) -> None:
    anonymous = await client.get("/api/docs")
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == "/login?next=/api/docs"
    assert (await client.get("/api/openapi.json")).status_code == 401
    await _sign_in(client, "carl")
    docs = await client.get("/api/docs")
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    for name, value in SECURITY_HEADERS.items():
        assert docs.headers[name] == value
    assert "default-src 'self'" in docs.headers["content-security-policy"]
    # nothing is loaded from anywhere else, and no script at all
    for attribute in re.findall(r'(?:src|href|action)="([^"]*)"', docs.text):
        assert attribute.startswith(("/", "#")) and not attribute.startswith("//"), attribute
    assert "<script" not in docs.text and "swagger" not in docs.text.lower()
    # it documents the API: operations, who may call them, and the schemas
    assert "<code>GET /api/units/{unit_id}</code>" in docs.text
    assert 'id="schema-Credentials"' in docs.text
    units = docs.text.split("<code>GET /api/units/{unit_id}/footage</code>", 1)[1]
    assert "Who may call it:</strong> manager, data controller<" in units
    login = docs.text.split("<code>POST /api/login</code>", 1)[1]
    assert "anyone, without signing in" in login.split("</section>", 1)[0]
    document = await client.get("/api/openapi.json")
    assert document.status_code == 200
    assert document.json()["info"]["title"] == "CCTV fleet controller"
    assert "/api/units" in document.json()["paths"]


async def test_the_document_answers_an_api_token(client: httpx.AsyncClient, db: Database) -> None:
    token = await Accounts(db, FAST).create_token("carl", name="codegen", actor="test")
    document = await client.get("/api/openapi.json", headers={"Authorization": f"Bearer {token}"})
    assert document.status_code == 200 and "paths" in document.json()
