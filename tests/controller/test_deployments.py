"""Deployments gated on an approved PIA: the workflow against real SQLite and PostgreSQL
(the `db` fixture), the signed authorization through a real Mosquitto broker, and the
JSON routes with real sign-in."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError
from sqlalchemy import select

from controller.accounts import Accounts, AuthSettings
from controller.api.app import create_app
from controller.config import ControllerSettings
from controller.deployments import (
    ApprovalBlocked,
    DeploymentPolicy,
    DeploymentRefused,
    DeploymentRequest,
    DeploymentWorkflow,
    LocationIn,
    NotPermitted,
    review_job,
)
from controller.deployments import locations as loc
from controller.deployments.models import ApproveRequest, RenewRequest
from controller.deployments.pia import (
    Evaluation,
    Likelihood,
    PriorConsultation,
    PrivacyImpactAssessment,
    RiskLevel,
    Severity,
    overall_risk,
)
from controller.link import ControllerLink
from controller.store.audit import AuditEntry
from controller.store.base import Database
from controller.store.deployments import AuthorizationRow, RevocationRow
from controller.store.fleet import Unit
from protocol import messages as m
from protocol.signing import Signer, Verifier, load_public_key
from tests.harness import MosquittoBroker, mqtt_client

pytestmark = pytest.mark.dates

KEY = Ed25519PrivateKey.generate()
#: The requests' planned start (midnight UTC a week from today) and planned end: every date
#: in these tests is counted from them, so the suite passes on any day.
T0 = datetime.combine(datetime.now(UTC).date() + timedelta(days=7), time(0), UTC)
END = T0 + timedelta(days=213)


def day(offset: int) -> str:
    """The date `offset` days from the planned start, as a PIA form gives it."""
    return (T0 + timedelta(days=offset)).date().isoformat()


@dataclass(frozen=True)
class Person:
    username: str
    role: str


OLLY = Person("olly", "operator")
MIA = Person("mia", "manager")
MAX = Person("max", "manager")


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def pia(
    *,
    residual: str = "low",
    masks: bool = True,
    dpo: bool = True,
    start: date | None = None,
    end: date | None = None,
) -> dict[str, Any]:
    """A complete PIA for a deployment from `start` to `end` (default: T0 to END): referral
    a month before, evidence over the six months before that, signs up two days before
    the start and down at the end, consultation and the DPO's advice in between."""
    first = start or T0.date()
    last = end or END.date()

    def before(days: int) -> str:
        return (first - timedelta(days=days)).isoformat()

    measure_residual = {"low": "low", "medium": "medium", "high": "high"}[residual]
    doc: dict[str, Any] = {
        "referral": {"source": "police", "referrer": "PC 1234, neighbourhood team",
                     "received_on": before(31)},
        "evidence_of_need": {
            "period_start": before(212), "period_end": before(32),
            "items": [{"reference": "CAD-2026-0113", "category": "burglary", "count": 7},
                      {"reference": "ASB-4471", "category": "ASB: drug dealing", "count": 19}],
            "summary": "Repeat burglary and drug dealing at the underpass over six months.",
        },
        "purpose": "Prevent and detect crime and ASB at the Mill Lane underpass.",
        "pressing_need": "26 recorded incidents in six months; residents' petition.",
        "alternatives_considered": "Lighting upgrade done in 2025; patrols could not cover.",
        "affected": "Pedestrians using the underpass; residents of Mill Lane 2-14.",
        "collateral_intrusion": [{"kind": "home", "masked": True,
                                  "description": "Front windows of no. 12 at the frame edge."}],
        "masks": [{"label": "windows of no. 12",
                   "polygon": [[0.8, 0.1], [1.0, 0.1], [1.0, 0.4], [0.8, 0.4]]}] if masks else [],
        "signage": {"description": "Two A3 signs with the council's contact point.",
                    "erect_by": before(2), "remove_by": last.isoformat()},
        "consultation": [{"party": "Ward councillors", "consulted_on": before(22),
                          "outcome": "Supported."}],
        "equality": [{"characteristic": c, "impact": "none"} for c in (
            "age", "disability", "gender_reassignment", "marriage_civil_partnership",
            "pregnancy_maternity", "race", "religion_belief", "sex", "sexual_orientation")],
        "risks": [{
            "title": "Intrusion into private homes",
            "description": "Windows of no. 12 are in view.",
            "likelihood": "probable", "severity": "severe",
            "measures": [{"description": "Privacy mask over the windows",
                          "effect": "eliminated" if residual == "low" else "accepted",
                          "residual_risk": measure_residual}],
        }],
    }  # fmt: skip
    if dpo:
        doc["dpo_advice"] = {"dpo_name": "D. Protection", "advised_on": before(20),
                             "advice": "Proceed with masks.", "outcome": "accepted"}  # fmt: skip
    return doc


def request(location_id: int, unit: str = "cam-01", **pia_kw: Any) -> DeploymentRequest:
    return DeploymentRequest.model_validate({
        "unit_id": unit, "location_id": location_id,
        "planned_start": T0, "planned_end": END,
        "pia": pia(**pia_kw),
    })  # fmt: skip


async def add_unit(db: Database, unit_id: str = "cam-01") -> None:
    async with db.session() as s:
        s.add(Unit(unit_id=unit_id, registered_at=T0, source="provisioning"))
        await s.commit()


async def audit_actions(db: Database, subject: str | None = None) -> list[tuple[str, str]]:
    async with db.session() as s:
        query = select(AuditEntry.actor, AuditEntry.action).order_by(AuditEntry.seq)
        if subject is not None:
            query = query.where(AuditEntry.subject == subject)
        return [(a, b) for a, b in (await s.execute(query)).all()]


async def setup_flow(db: Database, clock: Clock, **kw: Any) -> tuple[DeploymentWorkflow, int]:
    await add_unit(db)
    flow = DeploymentWorkflow(db, signer=Signer(KEY), clock=clock, **kw)
    site = await loc.add_location(flow, OLLY, LocationIn(
        name="Mill Lane underpass", address="Mill Lane, Anytown", lat=51.5, lon=-0.12,
        geofence_radius_m=120, notes="Column 14, 230 V feed"))  # fmt: skip
    return flow, site.id


def test_ico_matrix_and_pia_rules() -> None:
    L, S = Likelihood, Severity
    assert overall_risk(L.REMOTE, S.MINIMAL) is RiskLevel.LOW
    assert overall_risk(L.REMOTE, S.SEVERE) is RiskLevel.MEDIUM
    assert overall_risk(L.POSSIBLE, S.SIGNIFICANT) is RiskLevel.MEDIUM
    assert overall_risk(L.PROBABLE, S.SIGNIFICANT) is RiskLevel.HIGH
    assert overall_risk(L.PROBABLE, S.SEVERE) is RiskLevel.HIGH
    doc = PrivacyImpactAssessment.model_validate(pia(residual="medium"))
    assert doc.risks[0].overall is RiskLevel.HIGH and doc.residual_risk is RiskLevel.MEDIUM
    assert doc.lawful_basis == "public_task" and doc.retention_days == 31
    bad = pia()
    bad["equality"] = bad["equality"][:-1]
    with pytest.raises(ValidationError, match="missing for: sexual orientation") as missing:
        PrivacyImpactAssessment.model_validate(bad)
    assert missing.value.errors()[0]["loc"] == ("equality",)  # shown beside the field
    overruled = pia()
    overruled["dpo_advice"] |= {"outcome": "overruled"}
    with pytest.raises(ValidationError, match="reasons"):
        PrivacyImpactAssessment.model_validate(overruled)
    with pytest.raises(ValidationError, match="extra"):
        PrivacyImpactAssessment.model_validate(pia() | {"colour": "blue"})


async def test_full_workflow_audited_end_to_end(db: Database) -> None:
    clock = Clock(T0 - timedelta(days=3))
    flow, site = await setup_flow(db, clock, policy=DeploymentPolicy(reminder_days=14))
    dep = await flow.create(OLLY, request(site))
    assert dep.status == "draft" and dep.residual_risk == "low"
    assert dep.review_due == T0 + timedelta(days=90)  # default review: 90 days from start

    with pytest.raises(DeploymentRefused, match="only a submitted request is decided"):
        await flow.approve(MIA, dep.id)
    await flow.submit(OLLY, dep.id)
    with pytest.raises(NotPermitted, match="needs the role manager"):
        await flow.approve(OLLY, dep.id)
    approved = await flow.approve(MIA, dep.id, ApproveRequest(notes="Proportionate."))
    assert approved.status == "approved" and approved.decided_by == "mia"
    async with db.session() as s:
        first = await s.get(AuthorizationRow, approved.authorization_id)
    assert first is not None and first.published_at is None  # no broker: sent later
    message = m.Authorization.model_validate(first.message)
    verifier = Verifier(KEY.public_key(), unit_id="cam-01", clock=clock)
    clock.now = T0
    body = verifier.authorization(message)
    assert body.valid_from == T0 and body.valid_until == T0 + timedelta(days=90)
    assert body.geofence == m.GeoFence(lat=51.5, lon=-0.12, radius_m=120)
    assert body.masks == [[(0.8, 0.1), (1.0, 0.1), (1.0, 0.4), (0.8, 0.4)]]
    assert body.retention_days == 31 and body.location_name == "Mill Lane underpass"

    # The planned start comes: active. 76 days later the reminder goes out, once.
    clock.now = T0 + timedelta(hours=1)
    assert (await review_job(db, None, clock.now)).activated == 1
    reminder_time = T0 + timedelta(days=77)
    assert (await review_job(db, None, reminder_time)).reminded == 1
    assert (await review_job(db, None, reminder_time + timedelta(hours=1))).reminded == 0
    assert (await flow.get(dep.id)).status == "review_due"

    clock.now = reminder_time + timedelta(days=2)
    renewed = await flow.renew(MIA, dep.id, RenewRequest(review_notes="Still needed: 9 incidents."))
    assert renewed.status == "active" and renewed.renewals == 1
    assert renewed.authorization_id != first.authorization_id
    assert renewed.review_due == clock.now + timedelta(days=90)

    clock.now += timedelta(days=10)
    with pytest.raises(NotPermitted):
        await flow.revoke(OLLY, dep.id, "operators cannot revoke")
    revoked = await flow.revoke(MIA, dep.id, "Signage found missing on inspection")
    assert revoked.status == "revoked" and revoked.end_reason.startswith("Signage")
    async with db.session() as s:
        revocation = (await s.execute(select(RevocationRow))).scalar_one()
    rev = m.Revocation.model_validate(revocation.message)
    assert verifier.revocation(rev).authorization_id == renewed.authorization_id
    with pytest.raises(DeploymentRefused, match="holds no authorization"):
        await flow.end(OLLY, dep.id, "too late")

    evaluation = Evaluation.model_validate({
        "before": {"period_start": day(-212), "period_end": day(-1), "crime": 26,
                   "asb": 19},
        "during": {"period_start": day(0), "period_end": day(101), "crime": 9, "asb": 4,
                   "arrests": 2, "evidence_releases": 3},
        "after": {"period_start": day(102), "period_end": day(152), "crime": 5, "asb": 6},
        "conclusion": "Crime fell by two thirds while deployed.",
    })  # fmt: skip
    done = await flow.attach_evaluation(OLLY, dep.id, evaluation)
    assert done.evaluation is not None and done.evaluation["during"]["arrests"] == 2

    assert await audit_actions(db, f"deployment:{dep.id}") == [
        ("olly", "deployment.create"),
        ("olly", "deployment.submit"),
        ("mia", "deployment.approve"),
        ("system", "deployment.activate"),
        ("system", "deployment.review_reminder"),
        ("mia", "deployment.renew"),
        ("mia", "deployment.revoke"),
        ("olly", "deployment.evaluation"),
    ]
    _, history = await loc.get_location(flow, site)
    assert [d.id for d in history] == [dep.id]


async def test_submitter_cannot_decide_their_own_request(db: Database) -> None:
    clock = Clock(T0 - timedelta(days=1))
    flow, site = await setup_flow(db, clock)
    dep = await flow.create(MAX, request(site))
    await flow.submit(MAX, dep.id)
    for decide in (flow.approve(MAX, dep.id), flow.reject(MAX, dep.id, "mine")):
        with pytest.raises(NotPermitted, match="cannot decide a request they raised or submitted"):
            await decide
    assert (await flow.get(dep.id)).status == "submitted"
    assert (await flow.approve(MIA, dep.id)).status == "approved"


async def test_high_residual_risk_blocks_approval_until_prior_consultation(db: Database) -> None:
    clock = Clock(T0 - timedelta(days=1))
    flow, site = await setup_flow(db, clock)
    dep = await flow.create(OLLY, request(site, residual="high"))
    assert dep.residual_risk == "high"
    await flow.submit(OLLY, dep.id)
    with pytest.raises(ApprovalBlocked, match="residual risk is HIGH: record prior consultation"):
        await flow.approve(MIA, dep.id)
    async with db.session() as s:
        assert (await s.execute(select(AuthorizationRow))).first() is None
    await flow.record_prior_consultation(OLLY, dep.id, PriorConsultation(
        consulted_on=(T0 - timedelta(days=12)).date(), reference="ICO/RFA0123456",
        outcome="The ICO advised the masks are sufficient."))  # fmt: skip
    approved = await flow.approve(MIA, dep.id)
    assert approved.status == "approved" and approved.authorization_id
    assert approved.pia["prior_consultation"]["reference"] == "ICO/RFA0123456"
    actions = [a for _, a in await audit_actions(db, f"deployment:{dep.id}")]
    assert actions == ["deployment.create", "deployment.submit", "deployment.prior_consultation",
                       "deployment.approve"]  # fmt: skip


async def test_rejection_and_decision_not_to_deploy_keep_their_reasons(db: Database) -> None:
    clock = Clock(T0 - timedelta(days=1))
    flow, site = await setup_flow(db, clock)
    one = await flow.create(OLLY, request(site))
    await flow.submit(OLLY, one.id)
    rejected = await flow.reject(MIA, one.id, "Evidence period too short to show a pressing need")
    assert rejected.status == "rejected" and rejected.decided_by == "mia"
    assert rejected.decision_reason.startswith("Evidence period too short")
    two = await flow.create(OLLY, request(site))
    closed = await flow.decide_not_to_deploy(OLLY, two.id, "Street lighting solved it")
    assert closed.status == "not_deployed" and closed.decision_reason == "Street lighting solved it"
    with pytest.raises(DeploymentRefused, match=r"\(not_deployed\) cannot be submitted"):
        await flow.submit(OLLY, two.id)
    async with db.session() as s:
        rows = (
            await s.execute(
                select(AuditEntry)
                .where(AuditEntry.action.in_(["deployment.reject", "deployment.not_deployed"]))
                .order_by(AuditEntry.seq)
            )
        ).scalars()
        reasons = [(r.action, r.details_json) for r in rows]
    assert [a for a, _ in reasons] == ["deployment.reject", "deployment.not_deployed"]
    assert "Evidence period too short" in reasons[0][1] and "Street lighting" in reasons[1][1]
    _, history = await loc.get_location(flow, site)
    assert {d.status for d in history} == {"rejected", "not_deployed"}


async def test_overdue_review_lapses_and_planned_end_ends(db: Database) -> None:
    clock = Clock(T0 - timedelta(days=1))
    flow, site = await setup_flow(db, clock, policy=DeploymentPolicy(reminder_days=0))
    dep = await flow.create(OLLY, request(site))
    await flow.submit(OLLY, dep.id)
    review_by = (T0 + timedelta(days=30)).date()
    await flow.approve(MIA, dep.id, ApproveRequest(review_by=review_by))
    due = T0 + timedelta(days=31)  # the end of the review day
    assert (await flow.get(dep.id)).authorized_until == due  # valid_until = the review date
    result = await review_job(db, None, due + timedelta(minutes=1))
    assert (result.activated, result.reminded, result.lapsed) == (1, 1, 1)
    assert (await review_job(db, None, due + timedelta(days=1))).lapsed == 0
    ended = await review_job(db, None, END + timedelta(hours=1))
    assert ended.ended == 1
    row = await flow.get(dep.id)
    assert row.status == "ended" and row.end_reason == "planned end reached"
    with pytest.raises(Exception, match="more than 365 days"):
        too_late = T0.date() + timedelta(days=400)
        await flow.create(OLLY, request(site).model_copy(update={"review_by": too_late}))


# ----------------------------------------------------------------- real broker


async def test_authorization_reaches_the_unit_signed_and_retained(
    tmp_path: Path, broker: MosquittoBroker, controller_settings: Callable[..., ControllerSettings]
) -> None:
    settings = controller_settings(broker)
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
    await db.migrate()
    link = ControllerLink.from_settings(settings)
    assert link.signer is not None
    task = asyncio.create_task(link.run(lambda _msg: None, subscribe=False), name="test-link")
    try:
        await link.wait_connected(10)
        await add_unit(db, "cam-02")
        clock = Clock(datetime.now(UTC))
        flow = DeploymentWorkflow(db, signer=link.signer, link=link, clock=clock)
        site = await loc.add_location(
            flow, OLLY, LocationIn(name="Market Square", lat=51.51, lon=-0.1, geofence_radius_m=80)
        )
        start, end = clock.now - timedelta(hours=1), clock.now + timedelta(days=30)
        req = DeploymentRequest.model_validate({
            "unit_id": "cam-02", "location_id": site.id, "planned_start": start,
            "planned_end": end, "pia": pia(start=start.date(), end=end.date()),
        })  # fmt: skip
        dep = await flow.create(OLLY, req)
        await flow.submit(OLLY, dep.id)
        approved = await flow.approve(MIA, dep.id)
        assert approved.status == "active"

        public = load_public_key(broker.fleet.layout.controller_signing_pub.read_bytes())
        verifier = Verifier(public, unit_id="cam-02")
        topic = broker.fleet.topics.unit("cam-02", m.Authorization.channel)
        async with mqtt_client(broker, "cam-02") as unit:
            await unit.subscribe(topic, qos=1)
            async with asyncio.timeout(5):
                received = await anext(aiter(unit.messages))
            assert received.retain
            msg = m.decode(received.payload)  # type: ignore[arg-type]
            assert isinstance(msg, m.Authorization)
            body = verifier.authorization(msg)
            assert (
                body.deployment_id == dep.id and body.authorization_id == approved.authorization_id
            )

            await flow.revoke(MIA, dep.id, "Complaint upheld")
            async with asyncio.timeout(5):
                live = await anext(aiter(unit.messages))
            revocation = m.decode(live.payload)  # type: ignore[arg-type]
            assert isinstance(revocation, m.Revocation)
            assert verifier.revocation(revocation).authorization_id == body.authorization_id
        # A unit connecting afterwards finds the revocation retained, not the authorization.
        async with mqtt_client(broker, "cam-02") as late:
            await late.subscribe(topic, qos=1)
            async with asyncio.timeout(5):
                retained = await anext(aiter(late.messages))
            assert isinstance(m.decode(retained.payload), m.Revocation)  # type: ignore[arg-type]
        async with db.session() as s:
            rows = (await s.execute(select(AuthorizationRow.published_at))).scalars().all()
        assert all(p is not None for p in rows)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await db.dispose()


# ----------------------------------------------------------------- JSON routes

FAST = AuthSettings(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1)
PASSWORD = "correct horse battery staple"


@pytest.fixture
async def api(db: Database) -> AsyncIterator[Callable[[str], Any]]:
    accounts = Accounts(db, FAST)
    for name, role, contractor in (
        ("olly", "operator", None),
        ("mia", "manager", None),
        ("max", "manager", None),
        ("carl", "contractor", "Acme"),
    ):
        await accounts.add_user(name, role, PASSWORD, contractor=contractor, actor="test")
    await add_unit(db)
    app = create_app(ControllerSettings(database_url=db.url), db, auth=FAST)
    clients: list[httpx.AsyncClient] = []

    async def as_user(name: str) -> httpx.AsyncClient:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
        clients.append(client)
        login = await client.post("/api/login", json={"username": name, "password": PASSWORD})
        assert login.status_code == 200, login.text
        client.headers["X-CSRF-Token"] = login.json()["csrf_token"]
        return client

    yield as_user
    for client in clients:
        await client.aclose()


async def test_routes_roles_and_sentences(api: Callable[[str], Any]) -> None:
    olly, mia, max_, carl = [await api(n) for n in ("olly", "mia", "max", "carl")]
    site = await olly.post(
        "/api/locations",
        json={"name": "Bus station", "lat": 51.5, "lon": -0.1, "geofence_radius_m": 100},
    )
    assert site.status_code == 201, site.text
    body = request(site.json()["id"]).model_dump(mode="json")
    created = await olly.post("/api/deployments", json=body)
    assert created.status_code == 201, created.text
    dep_id = created.json()["id"]
    assert created.json()["pia"]["purpose"].startswith("Prevent and detect")

    for path in (
        f"/api/deployments/{dep_id}",
        "/api/deployments",
        "/api/locations",
        f"/api/locations/{site.json()['id']}",
    ):
        refused = await carl.get(path)
        assert refused.status_code == 403, (path, refused.text)
        assert "purpose" not in refused.text
    assert (await carl.post(f"/api/deployments/{dep_id}/submit")).status_code == 403

    assert (await olly.post(f"/api/deployments/{dep_id}/approve")).status_code == 403
    submitted = await mia.post(f"/api/deployments/{dep_id}/submit")
    assert submitted.status_code == 200 and submitted.json()["status"] == "submitted"
    own = await mia.post(f"/api/deployments/{dep_id}/approve", json={})
    assert own.status_code == 403, own.text
    assert "cannot decide a request they raised or submitted" in own.json()["detail"]
    queue = await max_.get("/api/deployments/queue")
    assert [d["id"] for d in queue.json()] == [dep_id]
    unsigned = await max_.post(f"/api/deployments/{dep_id}/approve", json={})
    assert unsigned.status_code == 409
    assert unsigned.json()["detail"].endswith("so it cannot sign the unit's authorization.")
    reject = await max_.post(f"/api/deployments/{dep_id}/reject", json={"reason": "no"})
    assert reject.status_code == 422  # a reason needs a few words
    reject = await max_.post(
        f"/api/deployments/{dep_id}/reject", json={"reason": "Masks do not cover the school gate"}
    )
    assert reject.json()["status"] == "rejected"
    again = await max_.post(f"/api/deployments/{dep_id}/reject", json={"reason": "twice over"})
    assert again.status_code == 409
    assert again.json()["detail"] == (
        f"Deployment {dep_id} (rejected) cannot be rejected: only a submitted request is decided."
    )
    missing = await mia.get("/api/deployments/dep-nothere")
    assert missing.status_code == 404 and missing.json()["detail"] == "No deployment 'dep-nothere'."
    history = await mia.get(f"/api/locations/{site.json()['id']}")
    assert [d["status"] for d in history.json()["deployments"]] == ["rejected"]
