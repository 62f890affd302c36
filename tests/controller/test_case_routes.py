"""Cases and the evidence logs over HTTP (the real app, SQLite and PostgreSQL): a
contractor is refused every case, log and footage route of the app (found by walking the
app's routes, so a route added later is covered too); an auditor reads and changes
nothing; the requester cannot approve their own case; the logs filter and download as CSV
in local time."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts

from controller.accounts import AuthSettings
from controller.api.app import create_app
from controller.api.auth import Role
from controller.config import ControllerSettings
from controller.evidence.sar import LOCAL_ZONE
from controller.store import Database
from controller.store.evidence import ExhibitRow, ReleaseRow, ReviewLogRow
from controller.store.fleet import Unit

FAST = AuthSettings(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1)
PASSWORD = "a long test password"
USERS = {
    "olly": Role.OPERATOR,
    "mia": Role.MANAGER,
    "dora": Role.DATA_CONTROLLER,
    "dan": Role.DATA_CONTROLLER,
    "aude": Role.AUDITOR,
    "carl": Role.CONTRACTOR,
}
#: A route is about evidence when its path says so: every case, log, footage, exhibit,
#: release, retrieval or upload route, JSON or page.
EVIDENCE = re.compile(
    r"case|review|release|/logs|footage|exhibit|evidence|retriev|upload", re.IGNORECASE
)
NOT_EVIDENCE = {"/api/deployments/reviews"}  # a deployment's PIA review dates


@pytest.fixture
async def app(db: Database) -> FastAPI:
    app = create_app(ControllerSettings(database_url=db.url), db, auth=FAST)
    for name, role in USERS.items():
        contractor = "Test Maintenance Ltd" if role is Role.CONTRACTOR else None
        await app.state.accounts.add_user(name, role, PASSWORD, contractor=contractor, actor="test")
    now = datetime.now(UTC)
    async with db.session() as session:
        for unit_id in ("cam-01", "cam-02"):
            session.add(
                Unit(
                    unit_id=unit_id,
                    registered_at=now - timedelta(days=60),
                    contractor="Test Maintenance Ltd",
                )
            )
        await session.commit()
    return app


@asynccontextmanager
async def signed_in(app: FastAPI, username: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(base_url="http://t", transport=transport, timeout=20) as client:
        answer = await client.post("/api/login", json={"username": username, "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        client.headers["X-CSRF-Token"] = answer.json()["csrf_token"]
        yield client


def case_body(now: datetime, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "case_type": "police_request",
        "external_ref": "URN 12/3456",
        "requester_name": "PC 42 Brown",
        "requester_org": "Example Constabulary",
        "lawful_basis": "Prevention and detection of crime",
        "reason": "Theft of a bicycle from the stands.",
        "ranges": [
            {
                "unit_id": "cam-01",
                "start": (now - timedelta(hours=2)).isoformat(),
                "end": (now - timedelta(hours=1)).isoformat(),
            }
        ],
    }
    body.update(overrides)
    return body


def evidence_routes(app: FastAPI) -> list[tuple[str, str]]:
    found = sorted(
        {
            (method, route.path)
            for route in iter_route_contexts(app.routes)
            if isinstance(route.original_route, APIRoute)
            for method in route.methods or ()
            if EVIDENCE.search(route.path) and route.path not in NOT_EVIDENCE
        }
    )
    return found


def _fill(path: str, number: str) -> str:
    values = {"number": number, "unit_id": "cam-01", "step": "approve"}
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values.get(m.group(1), "1"), path)


async def test_contractor_is_refused_every_evidence_route(app: FastAPI) -> None:
    now = datetime.now(UTC)
    async with signed_in(app, "olly") as olly:
        made = await olly.post("/api/cases", json=case_body(now))
        assert made.status_code == 201, made.text
        number = made.json()["summary"]["number"]
    routes = evidence_routes(app)
    paths = {path for _, path in routes}
    # The walk finds at least what this part of the product serves.
    assert {
        "/api/cases",
        "/api/cases/{number}",
        "/cases",
        "/cases/{number}",
        "/logs/review",
        "/logs/releases.csv",
        "/api/review-log",
        "/api/release-log",
        "/units/{unit_id}/footage",
    } <= paths
    async with signed_in(app, "carl") as carl:
        for method, path in routes:
            answer = await carl.request(
                method, _fill(path, number), json={}, headers={"Accept": "text/html"}
            )
            assert answer.status_code == 403, (
                f"contractor got {answer.status_code}: {method} {path}"
            )
    async with signed_in(app, "dora") as dora:  # nothing moved
        assert (await dora.get(f"/api/cases/{number}")).json()["summary"]["status"] == "requested"


async def test_auditor_reads_but_changes_nothing(app: FastAPI) -> None:
    now = datetime.now(UTC)
    async with signed_in(app, "mia") as mia:
        number = (await mia.post("/api/cases", json=case_body(now))).json()["summary"]["number"]
    async with signed_in(app, "aude") as aude:
        assert (await aude.get("/api/cases")).status_code == 200
        assert (await aude.get(f"/api/cases/{number}")).status_code == 200
        assert (await aude.get(f"/cases/{number}")).status_code == 200
        assert (await aude.get("/logs/review.csv")).status_code == 200
        assert (await aude.post("/api/cases", json=case_body(now))).status_code == 403
        for step in ("approve", "refuse", "extend", "outcome", "close"):
            answer = await aude.post(f"/api/cases/{number}/{step}", json={})
            assert answer.status_code == 403, step
            page = await aude.post(f"/cases/{number}/{step}", data={})
            assert page.status_code == 403, step
    async with signed_in(app, "dora") as dora:
        detail = (await dora.get(f"/api/cases/{number}")).json()
        assert detail["summary"]["status"] == "requested"
        assert [t["action"] for t in detail["timeline"]] == ["case.raise"]


async def test_the_requester_cannot_approve_their_own_case(app: FastAPI) -> None:
    now = datetime.now(UTC)
    async with signed_in(app, "dora") as dora:
        number = (await dora.post("/api/cases", json=case_body(now))).json()["summary"]["number"]
        own = await dora.post(f"/api/cases/{number}/approve", json={})
        assert own.status_code == 403
        assert "cannot decide a case they raised" in own.json()["detail"]
        page = await dora.post(f"/cases/{number}/approve", data={})
        assert page.status_code == 403 and "another data controller" in page.text
    async with signed_in(app, "dan") as dan:
        bad = await dan.post(f"/api/cases/{number}/refuse", json={"reason": ""})
        assert bad.status_code == 422
        approved = await dan.post(f"/api/cases/{number}/approve", json={"notes": "Proportionate."})
        assert approved.status_code == 200, approved.text
        body = approved.json()
        assert body["summary"]["status"] == "approved"
        assert [h["state"] for h in body["holds"]] == ["pending"]  # no broker in this test
        again = await dan.post(f"/api/cases/{number}/approve", json={})
        assert again.status_code == 409
        missing = await dan.get("/api/cases/C-0000-9999")
        assert missing.status_code == 404 and missing.json()["detail"].startswith(
            "There is no case"
        )


async def test_bad_ranges_are_refused_with_a_sentence(app: FastAPI) -> None:
    now = datetime.now(UTC)
    async with signed_in(app, "olly") as olly:
        future = case_body(
            now,
            ranges=[
                {
                    "unit_id": "cam-01",
                    "start": now.isoformat(),
                    "end": (now + timedelta(hours=1)).isoformat(),
                }
            ],
        )
        answer = await olly.post("/api/cases", json=future)
        assert answer.status_code == 422 and "ends in the future" in answer.json()["detail"]
        unknown = case_body(
            now,
            ranges=[
                {
                    "unit_id": "cam-77",
                    "start": (now - timedelta(hours=1)).isoformat(),
                    "end": now.isoformat(),
                }
            ],
        )
        answer = await olly.post("/api/cases", json=unknown)
        assert answer.status_code == 422 and "no unit 'cam-77'" in answer.json()["detail"]
        page = await olly.post(
            "/cases/new",
            data={
                "case_type": "police_request",
                "requester_name": "PC 1",
                "lawful_basis": "crime",
                "reason": "theft",
                "r0.unit_id": "cam-01",
                "r0.start": "not a time",
                "r0.end": "",
            },
        )
        assert page.status_code == 422
        assert "Give the start of range 1 as a date and time." in page.text


async def test_logs_filter_and_download_as_csv_in_local_time(db: Database, app: FastAPI) -> None:
    now = datetime.now(UTC)
    async with signed_in(app, "olly") as olly:
        first = (await olly.post("/api/cases", json=case_body(now))).json()["summary"]["number"]
        second = (await olly.post("/api/cases", json=case_body(now))).json()["summary"]["number"]
    async with db.session() as session:
        from controller.evidence.cases import load_case

        one, two = await load_case(session, first), await load_case(session, second)
        exhibits = []
        for case in (one, two):
            exhibit = ExhibitRow(
                case_id=case.id,
                number=f"{case.number}/EX1",
                created_at=now,
                created_by="dora",
                path="exhibits/x",
                manifest_sha256="ab" * 32,
                kind="master",
            )
            session.add(exhibit)
            exhibits.append(exhibit)
        await session.flush()
        session.add(
            ReleaseRow(
                case_id=one.id,
                exhibit_id=exhibits[0].id,
                released_at=now,
                released_by="dora",
                recipient_name='=HYPERLINK("x")',
                recipient_org="Example Constabulary",
                reason="Charging decision",
                lawful_basis="DPA 2018 Sch 2",
                reference="URN 12/3456",
                method="encrypted USB",
                notes="",
            )
        )
        session.add(
            ReleaseRow(
                case_id=two.id,
                exhibit_id=exhibits[1].id,
                released_at=now - timedelta(days=10),
                released_by="dan",
                recipient_name="Ms Green",
                recipient_org="Insurer plc",
                reason="Claim",
                lawful_basis="Sch 2 para 5",
                reference="CLM-9",
                method="secure download",
                notes="",
            )
        )
        for user, case, at in (("dora", one, now), ("dan", two, now - timedelta(days=3))):
            session.add(
                ReviewLogRow(
                    at=at,
                    user=user,
                    case_id=case.id,
                    exhibit_id=None,
                    action="viewed",
                    client="127.0.0.1 Firefox",
                    detail="checked the range",
                )
            )
        await session.commit()
    today = now.astimezone(LOCAL_ZONE).date()
    async with signed_in(app, "aude") as aude:
        whole = await aude.get("/logs/releases.csv")
        assert whole.status_code == 200
        assert whole.headers["content-type"].startswith("text/csv")
        assert "attachment" in whole.headers["content-disposition"]
        rows = list(csv.reader(io.StringIO(whole.content.decode("utf-8-sig"))))
        assert rows[0][:4] == ["released (Europe/London)", "case", "exhibit", "recipient"]
        assert [r[1] for r in rows[1:]] == [first, second]  # newest first
        assert rows[1][3] == '\'=HYPERLINK("x")'  # never run as a formula
        assert (
            datetime.fromisoformat(rows[1][0]).utcoffset() == now.astimezone(LOCAL_ZONE).utcoffset()
        )
        recent = await aude.get("/logs/releases.csv", params={"from": today.isoformat()})
        assert [r[1] for r in csv.reader(io.StringIO(recent.text))][1:] == [first]
        insurer = await aude.get("/api/release-log", params={"recipient": "insurer"})
        assert [r["case"] for r in insurer.json()] == [second]
        reviews = await aude.get("/logs/review.csv", params={"user": "dan"})
        rows = list(csv.reader(io.StringIO(reviews.content.decode("utf-8-sig"))))
        assert len(rows) == 2 and rows[1][1:5] == ["dan", second, "", "viewed"]
        page = await aude.get("/logs/review", params={"case": first})
        assert page.status_code == 200 and first in page.text and second not in page.text
        backwards = await aude.get(
            "/logs/review",
            params={"from": today.isoformat(), "to": (today - timedelta(days=1)).isoformat()},
        )
        assert backwards.status_code == 422
        kpis = await aude.get(
            "/api/evidence-kpis",
            params={"from": (today - timedelta(days=30)).isoformat(), "to": today.isoformat()},
        )
        assert kpis.status_code == 200
        figures = kpis.json()
        assert figures["releases"] == 2 and figures["cases_raised"] == 2
        assert figures["by_type"]["police_request"] == 2
        page = await aude.get("/kpis")
        assert page.status_code == 200 and 'data-testid="releases">2<' in page.text
