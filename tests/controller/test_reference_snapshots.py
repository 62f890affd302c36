"""Reference pictures through the real broker and ingest, on SQLite and PostgreSQL: a
person's request goes to the unit as a signed command; the picture that answers it is kept
with the request and audited, one that answers no request is dropped; every view is
audited; the control room sees it (in the JSON API, the unit page, the mask editor's
facts), a contractor or an auditor never; a PIA names only a picture the control room
holds."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import aiomqtt
import cv2
import httpx
import numpy as np
import pytest
from sqlalchemy import select

from controller.accounts import Accounts, AuthSettings
from controller.api.app import create_app
from controller.api.auth import Role
from controller.config import ControllerSettings
from controller.deployments import DeploymentWorkflow
from controller.deployments.errors import InvalidDeployment
from controller.fleet.snapshots import request_reference
from controller.store import Database
from controller.store.audit import AuditEntry
from controller.store.snapshots import ReferenceSnapshotRecord
from protocol.messages import Command, ReferenceSnapshot, decode
from protocol.signing import Verifier
from protocol.topics import Channel
from tests.controller.conftest import UnitVoice, eventually, running_controller, send
from tests.controller.test_deployments import OLLY, request, setup_flow
from tests.harness import MosquittoBroker
from tests.harness.fleet import mqtt_client

UNIT = "cam-01"
FAST = AuthSettings(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1)
PASSWORD = "correct horse battery staple"
CONTRACTOR = "Test Maintenance Ltd"  # every unit of the test fleet
USERS = {
    "mia": (Role.MANAGER, None),
    "otto": (Role.OPERATOR, None),
    "dora": (Role.DATA_CONTROLLER, None),
    "aude": (Role.AUDITOR, None),
    "carl": (Role.CONTRACTOR, CONTRACTOR),
}


def a_picture(shade: int = 90) -> bytes:
    """A real JPEG: a grey scene with a bright square."""
    image = np.full((180, 320, 3), shade, np.uint8)
    image[40:120, 100:220] = 230
    ok, buffer = cv2.imencode(".jpg", image)
    assert ok
    return buffer.tobytes()


def answer(voice: UnitVoice, request_id: str, picture: bytes) -> Any:
    return voice.make(
        ReferenceSnapshot,
        request_id=request_id,
        captured_at=datetime.now(UTC),
        width=320,
        height=180,
        sha256=hashlib.sha256(picture).hexdigest(),
        jpeg=base64.b64encode(picture).decode(),
    )


@asynccontextmanager
async def signed_in(app: Any, username: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(base_url="http://t", transport=transport, timeout=10) as c:
        given = await c.post("/api/login", json={"username": username, "password": PASSWORD})
        assert given.status_code == 200, given.text
        c.headers["X-CSRF-Token"] = given.json()["csrf_token"]
        yield c


async def audit_rows(db: Database, action: str) -> list[AuditEntry]:
    async with db.session() as session:
        query = select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)
        return list((await session.execute(query)).scalars())


async def next_command(client: aiomqtt.Client) -> Command:
    async with asyncio.timeout(10):
        message = await anext(aiter(client.messages))
    command = decode(bytes(message.payload))  # type: ignore[arg-type]
    assert isinstance(command, Command)
    return command


async def test_a_requested_picture_is_kept_audited_and_shown_to_the_control_room_only(
    db: Database,
    broker: MosquittoBroker,
    controller_settings: Callable[..., ControllerSettings],
) -> None:
    settings = controller_settings(broker)
    topics = broker.fleet.topics
    voice = UnitVoice(UNIT)
    picture, stray = a_picture(), a_picture(40)
    async with (
        running_controller(settings, db) as service,
        mqtt_client(broker, UNIT) as unit,
    ):
        await unit.subscribe(topics.unit(UNIT, Channel.CMD), qos=1)
        asked = await request_reference(db, service.link, UNIT, actor="otto")
        command = await next_command(unit)
        verifier = Verifier(broker.fleet.controller_signing_key().public_key(), unit_id=UNIT)
        body = verifier.command(command)
        assert body.action.action == "reference_snapshot" and body.issued_by == "otto"
        assert body.action.request_id == asked.request_id  # type: ignore[union-attr]
        assert body.expires_at - body.issued_at == timedelta(minutes=2)

        await send(unit, topics, answer(voice, asked.request_id, picture))
        await send(unit, topics, answer(voice, asked.request_id, stray))  # a repeat: ignored
        await send(unit, topics, answer(voice, "never-asked", stray))  # no request: dropped
        await eventually(lambda: service.ingest.stored >= 3, within=10)
        await service.ingest.idle()

        async with db.session() as session:
            rows = list((await session.execute(select(ReferenceSnapshotRecord))).scalars())
        assert [(r.request_id, r.sha256, r.requested_by) for r in rows] == [
            (asked.request_id, hashlib.sha256(picture).hexdigest(), "otto")
        ]
        assert rows[0].size == len(picture) and rows[0].received_at is not None
        (requested,) = await audit_rows(db, "command.reference_snapshot")
        assert requested.actor == "otto" and requested.subject == f"unit:{UNIT}"
        (received,) = await audit_rows(db, "snapshot.received")
        details = json.loads(received.details_json)
        assert details["sha256"] == rows[0].sha256 and details["requested_by"] == "otto"
        assert details["shows"] == "the camera's own view, before privacy masks"

        accounts = Accounts(db, FAST)
        for name, (role, contractor) in USERS.items():
            await accounts.add_user(name, role, PASSWORD, contractor=contractor, actor="test")
        app = create_app(settings, db, service.link, auth=FAST)
        sha = rows[0].sha256
        assert sha is not None
        async with signed_in(app, "dora") as dora:
            listed = (await dora.get(f"/api/units/{UNIT}/reference-snapshots")).json()
            assert listed["latest"]["sha256"] == sha and listed["latest"]["state"] == "received"
            assert listed["shows"] == "the camera's own view, before privacy masks"
            shown = await dora.get(listed["latest"]["picture_url"])
            assert shown.status_code == 200 and shown.content == picture
            assert shown.headers["content-type"] == "image/jpeg"
            assert "no-store" in shown.headers["cache-control"]
            latest = await dora.get(f"/units/{UNIT}/reference-frame")
            assert latest.content == picture
            about = (await dora.get(f"/units/{UNIT}/reference-frame/about")).text
            assert "before privacy masks" in about and sha in about
            assert "asked for by otto" in about and "Ask cam-01" not in about  # may not ask
            page = (await dora.get(f"/units/{UNIT}")).text
            assert 'id="reference-h"' in page and f"/reference-frames/{sha}" in page
            refused = await dora.post(f"/api/units/{UNIT}/reference-snapshots")
            assert refused.status_code == 403
            unknown = await dora.get(f"/units/{UNIT}/reference-frames/{'0' * 64}")
            assert unknown.status_code == 404
            assert "holds no picture from cam-01 with SHA-256" in unknown.text
        viewed = await audit_rows(db, "snapshot.viewed")
        assert [(v.actor, json.loads(v.details_json)["sha256"]) for v in viewed] == [
            ("dora", sha)
        ] * 2

        for name in ("carl", "aude"):
            async with signed_in(app, name) as other:
                for path in (
                    f"/units/{UNIT}/reference-frame",
                    f"/units/{UNIT}/reference-frames/{sha}",
                    f"/units/{UNIT}/reference-frame/about",
                    f"/api/units/{UNIT}/reference-snapshots",
                ):
                    assert (await other.get(path)).status_code == 403, (name, path)
                posted = await other.post(f"/api/units/{UNIT}/reference-snapshots")
                assert posted.status_code == 403
                page = (await other.get(f"/units/{UNIT}")).text
                assert "reference-frame" not in page and "Reference picture" not in page
        assert len(await audit_rows(db, "snapshot.viewed")) == 2, "refusals show nothing"

        async with signed_in(app, "otto") as otto:
            about = (await otto.get(f"/units/{UNIT}/reference-frame/about")).text
            assert "Ask cam-01 for a new picture" in about
            again = await otto.post(f"/api/units/{UNIT}/reference-snapshots")
            assert again.status_code == 202, again.text
            second = await next_command(unit)
            assert second.body.action.request_id == again.json()["request_id"]  # type: ignore[union-attr]
            waiting = await otto.get(
                f"/units/{UNIT}/reference-frame/about",
                params={"request": again.json()["request_id"], "sha256": sha},
            )
            assert 'data-state="waiting"' in waiting.text and "Waiting for cam-01" in waiting.text
            assert f'data-sha256="{sha}"' in waiting.text, "the picture shown until then"
            none_yet = await otto.get("/units/cam-02/reference-frame")
            assert none_yet.headers["content-type"].startswith("image/svg+xml")
            assert "No picture from cam-02 yet: ask the unit for one" in none_yet.text


async def test_without_a_broker_the_request_is_a_503_sentence_and_nothing_is_kept(
    db: Database,
) -> None:
    from tests.controller.test_deployments import add_unit

    await add_unit(db, UNIT)
    await Accounts(db, FAST).add_user("otto", Role.OPERATOR, PASSWORD, contractor=None, actor="t")
    app = create_app(ControllerSettings(database_url=db.url), db, auth=FAST)
    async with signed_in(app, "otto") as otto:
        response = await otto.post(f"/api/units/{UNIT}/reference-snapshots")
        assert response.status_code == 503
        assert response.json()["detail"].startswith("Broker link: ")
    async with db.session() as session:
        assert (await session.scalar(select(ReferenceSnapshotRecord.id))) is None


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
async def test_a_pia_names_only_a_picture_the_control_room_holds_from_the_unit(
    db: Database,
) -> None:
    from tests.controller.test_deployments import T0, Clock

    flow, site = await setup_flow(db, Clock(T0 - timedelta(days=7)))
    assert isinstance(flow, DeploymentWorkflow)
    picture = a_picture()
    sha = hashlib.sha256(picture).hexdigest()
    req = request(site)
    drawn = req.model_copy(update={"pia": req.pia.model_copy(update={"reference_frame": sha})})
    with pytest.raises(InvalidDeployment, match="does not hold from cam-01"):
        await flow.create(OLLY, drawn)
    async with db.session() as session:
        now = T0 - timedelta(days=7)
        session.add(
            ReferenceSnapshotRecord(
                unit_id="cam-01", request_id="r-1", command_id="c-1", requested_by="otto",
                requested_at=now, expires_at=now + timedelta(minutes=2), sha256=sha,
                captured_at=now, received_at=now, width=320, height=180, size=len(picture),
                jpeg=picture,
            )
        )  # fmt: skip
        await session.commit()
    row = await flow.create(OLLY, drawn)
    assert row.pia["reference_frame"] == sha
