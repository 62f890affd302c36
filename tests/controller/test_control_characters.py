"""Control characters are refused at the edge, never a 500: every route of the app walked,
NUL sent in each of its path, query and form parameters and JSON fields, signed in and
not, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.params import Form
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel

from controller.accounts import Accounts, AuthSettings
from controller.api.app import create_app
from controller.config import ControllerSettings
from controller.store.base import Database

FAST = AuthSettings(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1)
PASSWORD = "correct horse battery staple"
NUL = "a\x00b"
PLACEHOLDER = {"unit_id": "cam-01", "callout_id": "1", "name": "app.css"}


@dataclass
class Probe:
    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    form: dict[str, str] | None = None
    json: dict[str, Any] | None = None

    def __str__(self) -> str:
        return f"{self.method} {self.path} {self.params} {self.form} {self.json}"


def _all(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _all(sub)


def _fill(path: str, nul_in: str | None = None) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        return "a%00b" if name == nul_in else PLACEHOLDER.get(name, "1")

    return re.sub(r"{(\w+)(?::\w+)?}", value, path)


def probes(app: FastAPI) -> Iterator[Probe]:
    """For each route and method: NUL in each path parameter, each query parameter, an
    undeclared query parameter, each form field (and an undeclared one), each top-level
    field of a JSON body."""
    for route in iter_route_contexts(app.routes):  # included routers' routes too
        if not isinstance(route.original_route, APIRoute):
            continue
        dependants = list(_all(route.dependant))
        queries = {p.alias for d in dependants for p in d.query_params}
        bodies = [p for d in dependants for p in d.body_params]
        forms = {p.alias for p in bodies if isinstance(p.field_info, Form)}
        json_fields: set[str] = set()
        for p in bodies:
            if isinstance(p.field_info, Form):
                continue
            model = p.field_info.annotation
            if isinstance(model, type) and issubclass(model, BaseModel):
                json_fields |= set(model.model_fields)
            else:
                json_fields.add(p.alias)
        for method in sorted(route.methods or ()):
            for name in re.findall(r"{(\w+)", route.path):
                yield Probe(method, _fill(route.path, name))
            base = _fill(route.path)
            for name in sorted(queries | {"probe"}):
                yield Probe(method, base, params={name: NUL})
            if method == "GET":
                continue
            for name in sorted(forms | {"probe"}):
                yield Probe(method, base, form={**dict.fromkeys(forms, "x"), name: NUL})
            for name in sorted(json_fields | {"probe"}):
                yield Probe(method, base, json={**dict.fromkeys(json_fields, "x"), name: NUL})
            yield Probe(method, base, json={"nested": [{"deep": NUL}]})


@pytest.fixture
async def app(db: Database) -> FastAPI:
    await Accounts(db, FAST).add_user("mia", "manager", PASSWORD, contractor=None, actor="test")
    return create_app(ControllerSettings(database_url=db.url), db, auth=FAST)


@pytest.fixture(params=["anonymous", "signed-in"])
async def client(request: pytest.FixtureRequest, app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        if request.param == "signed-in":
            answer = await client.post("/api/login", json={"username": "mia", "password": PASSWORD})
            assert answer.status_code == 200
            client.headers["X-CSRF-Token"] = answer.json()["csrf_token"]
        yield client


async def test_nul_anywhere_is_refused_with_a_sentence_on_every_route(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    sent = 0
    routes = set()
    for probe in probes(app):
        response = await client.request(
            probe.method, probe.path, params=probe.params, data=probe.form, json=probe.json
        )
        sent += 1
        routes.add(probe.path.split("?")[0])
        assert response.status_code < 500, f"{probe}: {response.status_code} {response.text}"
        assert response.status_code == 422, f"{probe}: {response.status_code}"
        if response.headers["content-type"].startswith("application/json"):
            detail = response.json()["detail"]
        else:
            detail = response.text
        assert "contains a control character (NUL); remove it" in detail, str(probe)
    assert sent > 200 and len(routes) > 30  # the walk really covered the app
    assert (await client.get("/healthz")).status_code == 200  # and the app is still fine


async def test_the_login_name_with_nul_is_a_sentence_not_a_500(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/login", json={"username": NUL, "password": "x" * 12})
    assert response.status_code == 422
    assert response.json() == {
        "detail": "The request is not valid (username: contains a control character (NUL); "
        "remove it)."
    }
    page = await client.post("/login", data={"username": NUL, "password": "x" * 12})
    assert page.status_code == 422 and page.headers["content-type"].startswith("text/html")
    assert "Username: contains a control character (NUL)" in page.text  # the field's label


async def test_multi_line_fields_keep_tab_and_newline_but_query_values_do_not(
    client: httpx.AsyncClient,
) -> None:
    typed = {"username": "mia", "password": "line one\r\nline two\tend"}
    assert (await client.post("/api/login", json=typed)).status_code == 401  # just wrong
    escape = await client.post("/api/login", json={"username": "mia\x1b[2J", "password": "x"})
    assert escape.status_code == 422 and "(ESC)" in escape.json()["detail"]
    tab = await client.get("/api/audit", params={"actor": "mia\tx"})
    assert tab.status_code == 422 and "(tab)" in tab.json()["detail"]


async def test_a_refused_page_keeps_the_signed_in_users_top_bar(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/fleet", params={"site": NUL})
    assert page.status_code == 422
    assert "site: contains a control character (nul)" in page.text.lower()  # a label may lead
    signed_in = "X-CSRF-Token" in client.headers
    assert ('data-testid="username">mia<' in page.text) is signed_in
