"""Who may call what: the guards of the app's own routes, read back as a matrix of endpoint
and roles, checked against the permission table and walked endpoint by endpoint for every
role over a real uvicorn server (SQLite and PostgreSQL); contractor scoping, and the remote
self-test going to the unit as a signed command through a real broker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy import text

from controller.accounts import Accounts, AuthSettings
from controller.accounts.permissions import PERMISSIONS, Permission, may, roles_for
from controller.api.app import create_app
from controller.api.auth import PUBLIC_ENDPOINTS, Role, guard_roles
from controller.callouts import CalloutService
from controller.config import ControllerSettings
from controller.fleet import import_units
from controller.link import ControllerLink
from controller.store.base import Database, utcnow
from controller.store.fleet import PowerReading, SelfTestRecord, Unit
from protocol.faults import FaultCode
from protocol.messages import Command, decode
from protocol.signing import Verifier
from protocol.topics import Channel
from provisioning import Fleet
from tests.harness import MosquittoBroker, free_port
from tests.harness.fleet import mqtt_client

FAST = AuthSettings(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1)
PASSWORD = "correct horse battery staple"
OURS, THEIRS = "Test Maintenance Ltd", "Other Services Ltd"
#: cam-01/cam-02 are real units of the test fleet (on the broker); cam-09 is another
#: contractor's unit, known to the inventory only.
INVENTORY = {"cam-01": OURS, "cam-02": OURS, "cam-09": THEIRS}
USERS = {
    Role.MANAGER: ("mia", None),
    Role.OPERATOR: ("otto", None),
    Role.DATA_CONTROLLER: ("dora", None),
    Role.CONTRACTOR: ("carl", OURS),
    Role.AUDITOR: ("aude", None),
}


@dataclass
class World:
    db: Database
    settings: ControllerSettings
    ours: int  # a callout on cam-01 (carl's contract)
    theirs: int  # a callout on cam-09 (another contractor's)


def _write_inventory(root: Path) -> Path:
    for unit_id, contractor in INVENTORY.items():
        folder = root / "units" / unit_id
        folder.mkdir(parents=True)
        doc = {"unit_id": unit_id, "site": f"site of {unit_id}", "model": "PTZ-4",
               "ups": "eaton@localhost", "contractor": contractor}  # fmt: skip
        (folder / "unit.json").write_text(json.dumps(doc))
    return root


async def _seed(db: Database, settings: ControllerSettings, inventory: Path) -> World:
    accounts = Accounts(db, FAST)
    for role, (name, contractor) in USERS.items():
        await accounts.add_user(name, role, PASSWORD, contractor=contractor, actor="test")
    await accounts.add_user("olga", Role.CONTRACTOR, PASSWORD, contractor=THEIRS, actor="test")
    service = CalloutService(settings)
    now = utcnow()
    async with db.session() as s:
        await import_units(s, inventory, actor="test")
        ids = []
        for unit_id in ("cam-01", "cam-09"):
            unit = await s.get(Unit, unit_id)
            assert unit is not None
            callout = await service.faults.fault_raised(
                s, unit, FaultCode.IMAGE_BLACK, check="image_black", detail="mean 3/255"
            )
            assert callout is not None
            ids.append(callout.id)
            s.add(PowerReading(unit_id=unit_id, at=now, source="mains", on_battery=False,
                               facts={"charge_pct": 100}))  # fmt: skip
            s.add(SelfTestRecord(unit_id=unit_id, report_id=f"r-{unit_id}", trigger="schedule",
                                 started_at=now, finished_at=now, verdict="fail", received_at=now,
                                 checks=[{"name": "image_black", "verdict": "fail",
                                          "value": 3.0, "threshold": 10.0}]))  # fmt: skip
        await s.commit()
    return World(db, settings, ids[0], ids[1])


@pytest.fixture
async def world(
    db: Database,
    broker: MosquittoBroker,
    controller_settings: Callable[..., ControllerSettings],
    tmp_path: Path,
) -> World:
    settings = controller_settings(broker, database_url=db.url)
    return await _seed(db, settings, _write_inventory(tmp_path / "inventory"))


@pytest.fixture
async def link(world: World) -> AsyncIterator[ControllerLink]:
    link = ControllerLink.from_settings(world.settings)
    task = asyncio.create_task(link.run(lambda _m: None, subscribe=False), name="test-link")
    await link.wait_connected(10)
    yield link
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.fixture
async def server(world: World, link: ControllerLink) -> AsyncIterator[str]:
    """The app behind a real uvicorn server on a free loopback port."""
    app = create_app(world.settings, world.db, link, auth=FAST)
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", proxy_headers=False
    )
    uv = uvicorn.Server(config)
    task = asyncio.create_task(uv.serve(), name="test-uvicorn")
    async with asyncio.timeout(10):
        while not uv.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
            await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    uv.should_exit = True
    async with asyncio.timeout(10):
        await task


@asynccontextmanager
async def _signed_in(
    username: str, *, base_url: str = "http://t", app: FastAPI | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """A client signed in as `username` (cookie session + its CSRF header); over the
    network to `base_url`, or straight into `app`."""
    transport = None if app is None else httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(base_url=base_url, transport=transport, timeout=10) as client:
        answer = await client.post("/api/login", json={"username": username, "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        client.headers["X-CSRF-Token"] = answer.json()["csrf_token"]
        yield client


#: The JSON endpoints walked role by role (the deployment routes have their own tests).
WALKED = ("/api/units", "/api/callouts", "/api/audit", "/api/users", "/api/me", "/api/logout")


def _matrix(app: FastAPI) -> dict[str, frozenset[Role]]:
    """ "METHOD path" -> the roles its guards let through, for every route of the app that
    asks for a signed-in user (read from the routes themselves, not from a copy)."""
    matrix: dict[str, frozenset[Role]] = {}
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, APIRoute):
            continue
        allowed = guard_roles(route.dependant)
        if allowed is not None:
            for method in route.methods or ():
                matrix[f"{method} {route.path}"] = frozenset(allowed)
    return matrix


def _path(endpoint: str, world: World) -> tuple[str, str]:
    method, template = endpoint.split(" ", 1)
    return method, template.format(unit_id="cam-01", callout_id=world.ours)


#: What an allowed call may answer (anything but 401/403; a lifecycle step may find the
#: callout already moved by a role before it: 409).
ALLOWED_STATUS = {"GET": {200}, "POST": {200, 202, 204, 409}}


def _walked(matrix: dict[str, frozenset[Role]]) -> list[str]:
    endpoints = [e for e in matrix if e.split(" ", 1)[1].startswith(WALKED)]
    # logout last: it ends the session the others use
    return sorted(endpoints, key=lambda e: (e == "POST /api/logout", e))


async def test_role_matrix_over_a_real_server(server: str, world: World) -> None:
    matrix = _matrix(create_app(world.settings, world.db, auth=FAST))
    walked = _walked(matrix)
    assert len(walked) == 18
    seen: dict[tuple[str, Role], int] = {}
    for role, (username, _) in USERS.items():
        async with _signed_in(username, base_url=server) as client:
            for endpoint in walked:
                method, path = _path(endpoint, world)
                response = await client.request(method, path, json={"note": f"by {role}"})
                seen[endpoint, role] = response.status_code
                if role in matrix[endpoint]:
                    assert response.status_code in ALLOWED_STATUS[method], (
                        f"{role} refused {endpoint}: {response.status_code} {response.text}"
                    )
                else:
                    assert response.status_code == 403, f"{role} allowed {endpoint}"
                    detail = response.json()["detail"]
                    assert detail.startswith("This needs the ") and role.label in detail
    # the first allowed role to acknowledge really moved the callout
    assert seen["POST /api/callouts/{callout_id}/acknowledge", Role.MANAGER] == 200
    assert seen["POST /api/units/{unit_id}/selftest", Role.CONTRACTOR] == 202
    assert seen["POST /api/units/{unit_id}/reference-snapshots", Role.OPERATOR] == 202
    async with httpx.AsyncClient(base_url=server) as anonymous:
        for endpoint in walked:
            method, path = _path(endpoint, world)
            assert (await anonymous.request(method, path)).status_code == 401, endpoint


def test_the_permission_table_holds_the_designed_policy() -> None:
    """The design's own words, checked against the table every route and page uses."""
    assert set(PERMISSIONS) == set(Permission)
    assert all(PERMISSIONS[p] for p in Permission), "a permission no role has"
    assert roles_for(Permission.VIEW_USERS) == (Role.MANAGER,)
    assert roles_for(Permission.VIEW_AUDIT) == (Role.MANAGER, Role.AUDITOR)
    assert roles_for(Permission.VIEW_FOOTAGE) == (Role.MANAGER, Role.DATA_CONTROLLER)
    assert roles_for(Permission.DECIDE_DEPLOYMENTS) == (Role.MANAGER,)
    # The camera's view before privacy masks: the control room only; asked for by those
    # who draw masks and decide on them.
    assert roles_for(Permission.VIEW_REFERENCE_FRAME) == (
        Role.MANAGER,
        Role.OPERATOR,
        Role.DATA_CONTROLLER,
    )
    assert roles_for(Permission.REQUEST_REFERENCE_FRAME) == (Role.MANAGER, Role.OPERATOR)
    assert set(roles_for(Permission.VIEW_FLEET)) == set(Role)
    # Evidence: a data controller decides and releases, a manager may watch and download,
    # the control room raises; the auditor reads and changes nothing.
    assert roles_for(Permission.DECIDE_CASE) == (Role.DATA_CONTROLLER,)
    assert roles_for(Permission.RELEASE_FOOTAGE) == (Role.DATA_CONTROLLER,)
    assert roles_for(Permission.RAISE_CASE) == (Role.MANAGER, Role.OPERATOR, Role.DATA_CONTROLLER)
    assert roles_for(Permission.RECORD_CASE_OUTCOME) == (Role.MANAGER, Role.DATA_CONTROLLER)
    auditor = {p for p in Permission if may(Role.AUDITOR, p)}
    assert auditor == {
        Permission.VIEW_FLEET,
        Permission.VIEW_CALLOUTS,
        Permission.VIEW_DEPLOYMENTS,
        Permission.VIEW_CASES,
        Permission.VIEW_EVIDENCE_LOGS,
        Permission.VIEW_KPIS,
        Permission.VIEW_AUDIT,
    }
    # The contractor: maintenance only, never footage, frames, PIAs or the audit trail.
    contractor = {p for p in Permission if may(Role.CONTRACTOR, p)}
    assert contractor == {
        Permission.VIEW_FLEET,
        Permission.RUN_SELFTEST,
        Permission.VIEW_CALLOUTS,
        Permission.WORK_CALLOUTS,
    }


def test_each_route_is_guarded_as_the_table_says(tmp_path: Path) -> None:
    app: FastAPI = create_app(ControllerSettings(), Database(f"sqlite+aiosqlite:///{tmp_path}/x"))
    matrix = _matrix(app)
    assert matrix["GET /api/users"] == PERMISSIONS[Permission.VIEW_USERS]
    assert matrix["GET /api/audit"] == matrix["GET /api/audit/verify"]
    assert matrix["GET /api/audit"] == PERMISSIONS[Permission.VIEW_AUDIT]
    assert matrix["GET /api/units/{unit_id}/footage"] == PERMISSIONS[Permission.VIEW_FOOTAGE]
    assert matrix["GET /api/units"] == matrix["GET /api/units/{unit_id}"] == set(Role)
    for step in ("acknowledge", "attend", "resolve", "verify", "close"):
        endpoint = f"POST /api/callouts/{{callout_id}}/{step}"
        assert matrix[endpoint] == PERMISSIONS[Permission.WORK_CALLOUTS]
    assert matrix["POST /api/units/{unit_id}/selftest"] == PERMISSIONS[Permission.RUN_SELFTEST]
    frames = PERMISSIONS[Permission.VIEW_REFERENCE_FRAME]
    assert matrix["GET /api/units/{unit_id}/reference-snapshots"] == frames
    assert matrix["GET /units/{unit_id}/reference-frame"] == frames
    assert matrix["GET /units/{unit_id}/reference-frames/{sha256}"] == frames
    assert matrix["GET /units/{unit_id}/reference-frame/about"] == frames
    assert (
        matrix["POST /api/units/{unit_id}/reference-snapshots"]
        == PERMISSIONS[Permission.REQUEST_REFERENCE_FRAME]
    )
    assert matrix["POST /api/deployments/{deployment_id}/approve"] == {Role.MANAGER}
    # The pages take their guards from the same table as the JSON routes.
    assert matrix["GET /units/{unit_id}/footage"] == matrix["GET /api/units/{unit_id}/footage"]
    assert matrix["GET /callouts"] == matrix["GET /api/callouts"]
    assert matrix["GET /deployments"] == matrix["GET /api/deployments"]
    assert matrix["GET /audit"] == matrix["GET /api/audit"]
    # Cases, their logs and exhibits: the API and the pages, from the same table.
    assert matrix["GET /api/cases"] == matrix["GET /cases"] == PERMISSIONS[Permission.VIEW_CASES]
    assert matrix["POST /api/cases"] == matrix["POST /cases/new"]
    assert matrix["POST /api/cases"] == PERMISSIONS[Permission.RAISE_CASE]
    for step in ("approve", "refuse", "extend", "close"):
        endpoint = f"/cases/{{number}}/{step}"
        assert matrix[f"POST /api{endpoint}"] == matrix[f"POST {endpoint}"]
        assert matrix[f"POST {endpoint}"] == PERMISSIONS[Permission.DECIDE_CASE]
    outcome = PERMISSIONS[Permission.RECORD_CASE_OUTCOME]
    assert matrix["POST /api/cases/{number}/outcome"] == outcome
    assert matrix["POST /cases/{number}/outcome"] == outcome
    logs = PERMISSIONS[Permission.VIEW_EVIDENCE_LOGS]
    assert matrix["GET /api/review-log"] == matrix["GET /logs/review.csv"] == logs
    assert matrix["GET /api/release-log"] == matrix["GET /logs/releases"] == logs
    release = PERMISSIONS[Permission.RELEASE_FOOTAGE]
    assert matrix["POST /api/cases/{number}/releases"] == release
    assert matrix["POST /cases/{number}/release"] == release
    watch = PERMISSIONS[Permission.VIEW_FOOTAGE]
    assert matrix["GET /api/cases/{number}/exhibits/{part}/footage/{name}"] == watch
    assert matrix["GET /cases/{number}/exhibits/{part}/download"] == watch


def test_every_route_asks_for_a_signed_in_user_or_is_public(tmp_path: Path) -> None:
    app: FastAPI = create_app(ControllerSettings(), Database(f"sqlite+aiosqlite:///{tmp_path}/x"))
    served = {  # every route, those of included routers and those left out of the schema too
        f"{method} {route.path}"
        for route in iter_route_contexts(app.routes)
        if isinstance(route.original_route, APIRoute)
        for method in route.methods or ()
    }
    assert len(served) > 30
    # Pages open to anyone: signing in, the start page (it redirects), the static files.
    open_pages = {"GET /login", "POST /login", "GET /", "GET /static/{name}"}
    assert served - set(_matrix(app)) == PUBLIC_ENDPOINTS | open_pages


@pytest.fixture
def local_app(db: Database, tmp_path: Path) -> Iterator[tuple[FastAPI, Path]]:
    settings = ControllerSettings(database_url=db.url)
    yield create_app(settings, db, auth=FAST), _write_inventory(tmp_path / "inventory")


async def test_a_contractor_sees_only_their_units_and_never_footage_or_deployments(
    db: Database, local_app: tuple[FastAPI, Path]
) -> None:
    app, inventory = local_app
    world = await _seed(db, app.state.settings, inventory)
    async with _signed_in("carl", app=app) as carl:
        units = (await carl.get("/api/units")).json()
        assert [u["unit_id"] for u in units["units"]] == ["cam-01", "cam-02"]
        assert {u["contractor"] for u in units["units"]} == {OURS}
        other = await carl.get("/api/units/cam-09")
        assert other.status_code == 404
        assert other.json()["detail"] == "No unit 'cam-09' in the inventory."
        detail = (await carl.get("/api/units/cam-01")).json()
        assert detail["inventory"] is None and detail["gaps"] is None
        assert "deployment_id" not in detail["status"] and "gate_reason" not in detail["status"]
        assert [c["id"] for c in detail["callouts"]] == [world.ours]
        assert detail["selftests"][0]["checks"][0]["value"] == 3.0
        assert detail["power"][0]["source"] == "mains"
        text = json.dumps(detail)
        for word in ("snapshot", "footage", "segment", "pia", "deployment_id"):
            assert word not in text.lower()
        callouts = (await carl.get("/api/callouts")).json()
        assert [c["id"] for c in callouts] == [world.ours]
        assert (await carl.get(f"/api/callouts/{world.theirs}")).status_code == 404
        moved = await carl.post(f"/api/callouts/{world.theirs}/acknowledge", json={"note": "x"})
        assert moved.status_code == 404
        mine = await carl.post(f"/api/callouts/{world.ours}/acknowledge", json={"note": "on it"})
        assert mine.status_code == 200 and mine.json()["status"] == "acknowledged"
        assert mine.json()["events"][-1]["note"] == "on it"
        assert mine.json()["events"][-1]["actor"] == "carl"
        assert (await carl.post("/api/units/cam-09/selftest")).status_code == 404
        assert (await carl.get("/api/units/cam-01/footage")).status_code == 403
        pia_paths = [
            p
            for p in app.openapi()["paths"]
            if p.startswith(("/api/deployments", "/api/locations")) and "{" not in p
        ]
        assert pia_paths, "the deployment (PIA) routes are missing from the app"
        for path in pia_paths:
            assert (await carl.get(path)).status_code == 403, path
    async with _signed_in("olga", app=app) as olga:
        units = (await olga.get("/api/units")).json()["units"]
        assert [u["unit_id"] for u in units] == ["cam-09"]
    async with _signed_in("mia", app=app) as mia:
        full = (await mia.get("/api/units/cam-09")).json()
        assert full["inventory"]["ups"] == "eaton@localhost"
        assert len((await mia.get("/api/callouts", params={"status": "open"})).json()) == 2
        only = (await mia.get("/api/callouts", params={"contractor": THEIRS})).json()
        assert [c["id"] for c in only] == [world.theirs]
        refused = await mia.post(f"/api/callouts/{world.theirs}/close", json={"note": "done"})
        assert refused.status_code == 409
        assert refused.json()["detail"].startswith(f"Callout #{world.theirs} cannot go from")


async def test_step_without_csrf_is_refused_and_nothing_moves(
    db: Database, local_app: tuple[FastAPI, Path]
) -> None:
    app, inventory = local_app
    world = await _seed(db, app.state.settings, inventory)
    async with _signed_in("carl", app=app) as carl:
        del carl.headers["X-CSRF-Token"]
        refused = await carl.post(f"/api/callouts/{world.ours}/acknowledge", json={"note": "x"})
        assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
        assert (await carl.get(f"/api/callouts/{world.ours}")).json()["status"] == "raised"


async def test_selftest_without_a_broker_link_is_a_503_sentence(
    db: Database, local_app: tuple[FastAPI, Path]
) -> None:
    app, inventory = local_app
    await _seed(db, app.state.settings, inventory)
    async with _signed_in("otto", app=app) as otto:
        response = await otto.post("/api/units/cam-01/selftest")
    assert response.status_code == 503
    assert response.json()["detail"].startswith("Broker link: ")


async def test_contractor_selftest_reaches_the_unit_as_a_signed_command(
    server: str, world: World, broker: MosquittoBroker, fleet: Fleet
) -> None:
    async with mqtt_client(broker, "cam-01") as unit:
        await unit.subscribe(fleet.topics.unit("cam-01", Channel.CMD), qos=1)
        async with _signed_in("carl", base_url=server) as carl:
            response = await carl.post("/api/units/cam-01/selftest")
        assert response.status_code == 202, response.text
        async with asyncio.timeout(10):
            message: aiomqtt.Message = await anext(aiter(unit.messages))
    command = decode(bytes(message.payload))
    assert isinstance(command, Command)
    verifier = Verifier(fleet.controller_signing_key().public_key(), unit_id="cam-01")
    body = verifier.command(command)
    assert body.action.action == "selftest_now"
    assert body.command_id == response.json()["command_id"]
    assert body.issued_by == "carl"


async def test_errors_read_as_sentences_and_service_endpoints_answer(
    db: Database, local_app: tuple[FastAPI, Path]
) -> None:
    app, inventory = local_app
    await _seed(db, app.state.settings, inventory)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        health = await c.get("/healthz")
        assert health.json() == {"status": "ok", "database": "ok", "broker": "absent"}
        metrics = await c.get("/metrics")
        assert metrics.status_code == 200 and "cctv_open_callouts" in metrics.text
        assert (await c.get("/api/openapi.json")).status_code == 401  # signed-in callers only
        missing = await c.get("/api/nothing-here")
        assert missing.json() == {"detail": "There is nothing at /api/nothing-here."}
        invalid = await c.post("/api/login", json={"username": "mia"})
        assert invalid.status_code == 422
        assert invalid.json() == {"detail": "The request is not valid (password: Field required)."}
    async with _signed_in("mia", app=app) as mia:
        document = (await mia.get("/api/openapi.json")).json()
        assert document["info"]["title"] == "CCTV fleet controller"
        bad_id = await mia.get("/api/callouts/abc")
        assert bad_id.status_code == 422 and "callout_id" in bad_id.json()["detail"]
        unknown = await mia.get("/api/callouts/999999")
        assert unknown.status_code == 404 and unknown.json() == {"detail": "No callout #999999."}
        page = (await mia.get("/api/audit", params={"limit": 2})).json()
        assert len(page["entries"]) == 2 and page["next_before"] == page["entries"][-1]["seq"]
        assert page["entries"][0]["action"] == "auth.login"
        older = (await mia.get("/api/audit", params={"before": page["next_before"]})).json()
        assert older["entries"][0]["seq"] == page["next_before"] - 1
        check = (await mia.get("/api/audit/verify")).json()
        assert check["ok"] is True and check["rows"] >= 3
        users = (await mia.get("/api/users")).json()
        assert {u["username"] for u in users} == {"mia", "otto", "dora", "carl", "aude", "olga"}
        assert all("password" not in json.dumps(u) for u in users)


async def test_an_unexpected_failure_is_a_500_sentence_not_a_traceback(
    db: Database, local_app: tuple[FastAPI, Path]
) -> None:
    app, inventory = local_app
    await _seed(db, app.state.settings, inventory)
    async with _signed_in("mia", app=app) as mia:
        async with db.session() as s:
            await s.execute(text("DROP TABLE selftest_reports"))
            await s.commit()
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", cookies=mia.cookies
        ) as broken:
            response = await broken.get("/api/units/cam-01")
    assert response.status_code == 500
    detail = response.json()["detail"]
    assert detail.startswith("The controller hit an internal error")
    assert "Traceback" not in response.text and "selftest_reports" not in response.text


async def test_the_pages_and_the_api_answer_an_error_alike(
    db: Database, local_app: tuple[FastAPI, Path]
) -> None:
    app, inventory = local_app
    world = await _seed(db, app.state.settings, inventory)
    async with _signed_in("carl", app=app) as carl:
        for callout_id in (999999, world.theirs):  # unknown, and another contractor's
            api = await carl.get(f"/api/callouts/{callout_id}")
            page = await carl.get(f"/callouts/{callout_id}")
            assert api.status_code == page.status_code == 404
            assert api.json()["detail"] == f"No callout #{callout_id}."
            assert f"No callout #{callout_id}." in page.text
    async with _signed_in("mia", app=app) as mia:
        api = await mia.get("/api/deployments/dep-000000000000")
        page = await mia.get("/deployments/dep-000000000000")
        assert api.status_code == page.status_code == 404
        assert api.json()["detail"] == "No deployment 'dep-000000000000'."
        assert "No deployment &#39;dep-000000000000&#39;." in page.text


async def test_an_auditor_reads_units_and_callouts_but_moves_nothing(
    db: Database, local_app: tuple[FastAPI, Path]
) -> None:
    app, inventory = local_app
    world = await _seed(db, app.state.settings, inventory)
    async with _signed_in("aude", app=app) as aude:
        assert (await aude.get("/api/units/cam-01")).status_code == 200
        assert (await aude.get("/units/cam-01")).status_code == 200
        board = await aude.get("/callouts")
        assert board.status_code == 200 and f'href="/callouts/{world.ours}"' in board.text
        assert 'data-step="' not in board.text and 'data-action="selftest"' not in board.text
        one = await aude.get(f"/callouts/{world.ours}")
        assert one.status_code == 200 and 'data-step="' not in one.text
        step = await aude.post(f"/callouts/{world.ours}/acknowledge", data={"note": ""})
        assert step.status_code == 403
    async with _signed_in("otto", app=app) as otto:
        board = await otto.get("/callouts")
        assert 'data-step="acknowledge"' in board.text  # the operator sees the step
