"""Releasing a retrieved case through the JSON API (SQLite and PostgreSQL): the passphrase
unlocks the key for the job only, the exhibit is recorded with its release, the case moves
to released, every step is audited, and reviewers' playbacks and downloads go into the
review log. Contractors, operators and auditors are refused every route."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from controller import audit
from controller.accounts import AuthSettings
from controller.api.app import create_app
from controller.evidence.holds import case_subject
from controller.store import Database
from controller.store.audit import AuditEntry
from controller.store.evidence import CaseRow, ExhibitRow, ReleaseRow, ReviewLogRow
from tests.controller.retrieved_case import (
    PASSPHRASE,
    Person,
    RecordedUnit,
    RetrievedCase,
    make_recorded_unit,
    retrieved_case,
)

FAST = AuthSettings(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1)
PASSWORD = "a long test password"
OLLY = Person("olly", "operator")
DORA = Person("dora", "data_controller")
DAN = Person("dan", "data_controller")
MIA = Person("mia", "manager")
AUDE = Person("aude", "auditor")
CARL = Person("carl", "contractor")
RELEASE = {
    "recipient_name": "PC 1234 Ali Khan",
    "recipient_org": "Example Constabulary",
    "reason": "Identification of the suspect in the assault",
    "lawful_basis": "Data Protection Act 2018, Schedule 2 paragraph 2 (crime)",
    "reference": "URN 01XY2345678",
    "method": "secure download",
    "notes": "Collected by the officer in charge",
}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> RecordedUnit:
    return make_recorded_unit(tmp_path_factory.mktemp("recorded"))


@pytest.fixture
async def case(db: Database, recorded: RecordedUnit, tmp_path: Path) -> RetrievedCase:
    return await retrieved_case(db, recorded, tmp_path / "store", raised_by=OLLY, approved_by=DORA)


@pytest.fixture
async def app(db: Database, case: RetrievedCase) -> FastAPI:
    app = create_app(case.settings, db, auth=FAST)
    for person in (OLLY, DORA, DAN, MIA, AUDE, CARL):
        contractor = "Test Maintenance Ltd" if person.role == "contractor" else None
        await app.state.accounts.add_user(
            person.username, person.role, PASSWORD, contractor=contractor, actor="test"
        )
    return app


@asynccontextmanager
async def signed_in(app: FastAPI, person: Person) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("198.51.100.7", 50000))
    async with httpx.AsyncClient(base_url="http://t", transport=transport, timeout=60) as client:
        answer = await client.post(
            "/api/login", json={"username": person.username, "password": PASSWORD}
        )
        assert answer.status_code == 200, answer.text
        client.headers["X-CSRF-Token"] = answer.json()["csrf_token"]
        yield client


async def release(client: httpx.AsyncClient, number: str, **changes: str) -> httpx.Response:
    return await client.post(
        f"/api/cases/{number}/releases", json={**RELEASE, "passphrase": PASSPHRASE, **changes}
    )


async def finished(client: httpx.AsyncClient, answer: httpx.Response) -> dict[str, object]:
    assert answer.status_code == 202, answer.text
    url = answer.json()["progress"]
    async with asyncio.timeout(60):
        while True:
            job = (await client.get(url)).json()
            if job["state"] != "running":
                return dict(job)
            await asyncio.sleep(0.1)


async def audit_actions(db: Database, number: str) -> list[str]:
    async with db.session() as session:
        rows = await session.execute(
            select(AuditEntry.action)
            .where(AuditEntry.subject == case_subject(number))
            .order_by(AuditEntry.seq)
        )
        return list(rows.scalars())


def run_verify(folder: Path) -> subprocess.CompletedProcess[str]:
    python = getattr(sys, "_base_executable", None) or sys.executable
    return subprocess.run(
        [python, "-I", "verify.py"], cwd=folder, capture_output=True, text=True, timeout=60
    )


async def test_release_records_exhibit_release_and_review_log(
    db: Database,
    app: FastAPI,
    case: RetrievedCase,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="controller")
    number = case.number
    async with signed_in(app, DAN) as dan:
        wrong = await release(dan, number, passphrase="not the passphrase")
        assert wrong.status_code == 422
        assert wrong.json()["detail"] == "The passphrase does not unlock the evidence key."
        job = await finished(dan, await release(dan, number))
    assert job["state"] == "done", job
    assert job["exhibit"] == f"{number}/EX1"

    async with db.session() as session:
        row = await session.scalar(select(CaseRow).where(CaseRow.number == number))
        assert row is not None and row.status == "released"
        exhibit = await session.scalar(select(ExhibitRow).where(ExhibitRow.case_id == row.id))
        assert exhibit is not None and exhibit.kind == "master" and exhibit.created_by == "dan"
        rel = await session.scalar(select(ReleaseRow).where(ReleaseRow.exhibit_id == exhibit.id))
        assert rel is not None
        assert (rel.recipient_name, rel.method, rel.reference, rel.released_by) == (
            RELEASE["recipient_name"], RELEASE["method"], RELEASE["reference"], "dan",
        )  # fmt: skip
        assert rel.notes == RELEASE["notes"]
    folder = Path(exhibit.path)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["release"]["recipient_org"] == RELEASE["recipient_org"]
    assert manifest["release"]["released_by"] == "dan"
    assert len(manifest["units"][0]["reported_checkpoints"]) == 2  # from the controller's store
    actions = await audit_actions(db, number)
    assert actions[-3:] == ["evidence_key.refused", "exhibit.made", "case.released"]
    assert (await audit.verify(db)).ok

    # The passphrase went nowhere: not in a log line, the audit chain or the database.
    assert all(PASSPHRASE not in r.getMessage() for r in caplog.records)
    async with db.session() as session:
        details = (await session.execute(select(AuditEntry.details_json))).scalars()
        assert all(PASSPHRASE not in d for d in details)
    assert PASSPHRASE.encode() not in (folder / "manifest.json").read_bytes()

    async with signed_in(app, MIA) as mia:
        part = f"/api/cases/{number}/exhibits/EX1"
        listed = (await mia.get(f"/api/cases/{number}/exhibits")).json()
        assert [e["number"] for e in listed["exhibits"]] == [f"{number}/EX1"]
        doc = (await mia.get(part)).json()
        (video,) = doc["footage"]
        first = await mia.get(video["url"], headers={"Range": "bytes=0-1023"})
        assert first.status_code == 206 and len(first.content) == 1024
        size = int(first.headers["content-range"].rsplit("/", 1)[1])
        assert first.headers["content-type"] == "video/mp4"
        rest = await mia.get(video["url"], headers={"Range": f"bytes=1024-{size - 1}"})
        assert rest.status_code == 206
        assert first.content + rest.content == (folder / video["file"]).read_bytes()
        download = await mia.get(f"{part}/download")
        assert download.status_code == 200
        assert download.headers["content-type"] == "application/zip"
    archive = tmp_path / "download.zip"
    archive.write_bytes(download.content)
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(tmp_path / "unzipped")
    result = run_verify(tmp_path / "unzipped" / folder.name)
    assert result.returncode == 0, result.stdout + result.stderr

    async with db.session() as session:
        entries = list(
            (await session.execute(select(ReviewLogRow).order_by(ReviewLogRow.id))).scalars()
        )
    # one playback (two range requests) and one download, by mia, from her address
    assert [(e.user, e.action) for e in entries] == [("mia", "played"), ("mia", "downloaded")]
    assert all(e.exhibit_id == exhibit.id and e.client.startswith("198.51.100.7") for e in entries)
    assert "footage.played" in await audit_actions(db, number)


async def test_second_release_is_a_new_exhibit(
    db: Database, app: FastAPI, case: RetrievedCase
) -> None:
    async with signed_in(app, DAN) as dan:
        assert (await finished(dan, await release(dan, case.number)))["state"] == "done"
        second = await finished(dan, await release(dan, case.number, recipient_name="DC Jones"))
    assert second["state"] == "done" and second["exhibit"] == f"{case.number}/EX2"
    actions = await audit_actions(db, case.number)
    assert actions.count("exhibit.made") == 2 and "case.released_again" in actions


async def test_a_case_not_retrieved_cannot_be_released(
    db: Database, recorded: RecordedUnit, tmp_path: Path
) -> None:
    case = await retrieved_case(
        db, recorded, tmp_path / "store", raised_by=OLLY, approved_by=DORA, retrieved=False
    )
    app = create_app(case.settings, db, auth=FAST)
    await app.state.accounts.add_user(
        "dan", "data_controller", PASSWORD, contractor=None, actor="test"
    )
    async with signed_in(app, DAN) as dan:
        answer = await release(dan, case.number)
    assert answer.status_code == 409
    assert "only a case whose footage was retrieved can be released" in answer.json()["detail"]


async def test_roles_on_every_release_route(app: FastAPI, case: RetrievedCase) -> None:
    number = case.number
    async with signed_in(app, DAN) as dan:
        job = await finished(dan, await release(dan, number))
    video = f"/api/cases/{number}/exhibits/EX1/footage/x.mp4"
    routes = {
        ("POST", f"/api/cases/{number}/releases"): {"data_controller"},
        ("GET", f"/api/cases/{number}/release-jobs/{job['job']}"): {"data_controller"},
        ("GET", f"/api/cases/{number}/exhibits"): {"data_controller", "manager"},
        ("GET", f"/api/cases/{number}/exhibits/EX1"): {"data_controller", "manager"},
        ("GET", f"/api/cases/{number}/exhibits/EX1/download"): {"data_controller", "manager"},
        ("GET", video): {"data_controller", "manager"},
        ("GET", f"/cases/{number}/release"): {"data_controller"},
        ("POST", f"/cases/{number}/release"): {"data_controller"},
        ("GET", f"/cases/{number}/release-jobs/{job['job']}"): {"data_controller"},
        ("GET", f"/cases/{number}/exhibits/EX1"): {"data_controller", "manager"},
        ("GET", f"/cases/{number}/exhibits/EX1/download"): {"data_controller", "manager"},
        ("GET", f"/cases/{number}/exhibits/EX1/footage/x.mp4"): {"data_controller", "manager"},
    }
    for person in (OLLY, AUDE, CARL, MIA, DAN):
        async with signed_in(app, person) as client:
            for (method, path), allowed in routes.items():
                if method == "POST" and person.role in allowed:
                    continue  # releasing is tested above; not again for every route
                answer = await client.request(method, path, json={})
                if person.role in allowed:
                    assert answer.status_code in (200, 404), (person, path, answer.text)
                else:
                    assert answer.status_code == 403, (person, path, answer.status_code)
    # The unknown file name is refused as unknown, never served from elsewhere.
    async with signed_in(app, MIA) as mia:
        escape = await mia.get(f"/api/cases/{number}/exhibits/EX1/footage/..%2Fmanifest.json")
        assert escape.status_code == 404
