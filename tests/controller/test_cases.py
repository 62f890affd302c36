"""Cases on SQLite and PostgreSQL: raising with validated ranges, the four-eyes decision,
holds tracked from approval to release, the subject access deadline with its extension,
reminder and overdue state on a controllable clock, the steps for retrieval and release,
and every step in the audit chain."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlalchemy import select

from controller import audit
from controller.evidence import holds
from controller.evidence.case_errors import CaseNotPermitted, CaseRefused, InvalidCase
from controller.evidence.case_jobs import case_job
from controller.evidence.case_models import (
    CaseRequest,
    ExtendRequest,
    OutcomeRequest,
    RefuseRequest,
)
from controller.evidence.case_views import case_detail, list_cases
from controller.evidence.cases import (
    CaseWorkflow,
    mark_released,
    mark_retrieved,
    mark_retrieving,
)
from controller.evidence.evidence_logs import EvidenceKpis, evidence_kpis
from controller.evidence.sar import LOCAL_ZONE, SarState, add_months, due_by
from controller.evidence.settings import EvidenceSettings
from controller.store import Database
from controller.store.audit import AuditEntry
from controller.store.evidence import CaseHoldRow, CaseRow
from controller.store.fleet import Notification, Unit
from controller.store.reports import CommandAckRecord, CommandRecord


@dataclass(frozen=True)
class Person:
    username: str
    role: str


OLLY = Person("olly", "operator")
DORA = Person("dora", "data_controller")
DAN = Person("dan", "data_controller")
MIA = Person("mia", "manager")
AUDE = Person("aude", "auditor")
CARL = Person("carl", "contractor")


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def move(self, by: timedelta) -> None:
        self.now += by


@pytest.fixture
async def units(db: Database) -> list[str]:
    now = datetime.now(UTC)
    async with db.session() as session:
        for unit_id in ("cam-01", "cam-02"):
            session.add(Unit(unit_id=unit_id, registered_at=now - timedelta(days=60)))
        await session.commit()
    return ["cam-01", "cam-02"]


def request(now: datetime, **overrides: object) -> CaseRequest:
    values: dict[str, object] = {
        "case_type": "police_request",
        "external_ref": "URN 01/2345",
        "requester_name": "PC 123 Smith",
        "requester_org": "Example Constabulary",
        "requester_contact": "pc123@police.example",
        "lawful_basis": "DPA 2018 Sch 2 Part 1 para 2: prevention and detection of crime",
        "reason": "Assault outside the bus station; footage of the suspect leaving.",
        "ranges": [
            {
                "unit_id": "cam-01",
                "start": now - timedelta(hours=3),
                "end": now - timedelta(hours=2),
            },
            {
                "unit_id": "cam-02",
                "start": now - timedelta(hours=3),
                "end": now - timedelta(hours=1),
            },
        ],
    }
    values.update(overrides)
    return CaseRequest.model_validate(values)


async def _audit_actions(db: Database, number: str) -> list[str]:
    async with db.session() as session:
        rows = await session.execute(
            select(AuditEntry.action)
            .where(AuditEntry.subject == holds.case_subject(number))
            .order_by(AuditEntry.seq)
        )
        # The steps of the case itself (retrieval and release write their own too).
        return [a for a in rows.scalars() if a.startswith("case.")]


async def test_raise_validates_units_and_ranges(db: Database, units: list[str]) -> None:
    now = datetime.now(UTC)
    flow = CaseWorkflow(db, clock=lambda: now)
    with pytest.raises(InvalidCase, match="no unit 'cam-99'"):
        await flow.raise_case(
            OLLY,
            request(
                now, ranges=[{"unit_id": "cam-99", "start": now - timedelta(hours=1), "end": now}]
            ),
        )
    with pytest.raises(InvalidCase, match="ends in the future"):
        await flow.raise_case(
            OLLY,
            request(
                now, ranges=[{"unit_id": "cam-01", "start": now, "end": now + timedelta(hours=1)}]
            ),
        )
    with pytest.raises(InvalidCase, match="longer than 24 hours"):
        await flow.raise_case(
            OLLY,
            request(
                now, ranges=[{"unit_id": "cam-01", "start": now - timedelta(hours=25), "end": now}]
            ),
        )
    with pytest.raises(ValueError, match="end of a range must be after its start"):
        request(now, ranges=[{"unit_id": "cam-01", "start": now, "end": now - timedelta(hours=1)}])
    with pytest.raises(ValueError, match="only a subject access request"):
        request(now, received_at=now)
    with pytest.raises(CaseNotPermitted, match="needs the role"):
        await flow.raise_case(AUDE, request(now))
    with pytest.raises(CaseNotPermitted):
        await flow.raise_case(CARL, request(now))
    async with db.session() as session:
        assert (await session.execute(select(CaseRow))).first() is None


@pytest.mark.dates
async def test_numbers_follow_the_local_year(db: Database, units: list[str]) -> None:
    now = datetime.now(UTC)
    flow = CaseWorkflow(db, clock=lambda: now)
    first = await flow.raise_case(OLLY, request(now))
    second = await flow.raise_case(DORA, request(now))
    year = now.astimezone(LOCAL_ZONE).year
    assert (first.number, second.number) == (f"C-{year}-0001", f"C-{year}-0002")


async def test_four_eyes_approval_places_holds_and_close_releases_them(
    db: Database, units: list[str]
) -> None:
    now = datetime.now(UTC)
    flow = CaseWorkflow(db, clock=lambda: now)  # no broker link: holds wait to be sent
    row = await flow.raise_case(DORA, request(now))
    assert row.status == "requested" and row.due_at is None
    with pytest.raises(CaseNotPermitted, match="cannot decide a case they raised"):
        await flow.approve(DORA, row.number)
    with pytest.raises(CaseNotPermitted, match="data controller"):
        await flow.approve(MIA, row.number)
    with pytest.raises(CaseNotPermitted):
        await flow.approve(AUDE, row.number)
    with pytest.raises(CaseRefused, match="approved or refused first"):
        await flow.close(DAN, row.number)
    approved = await flow.approve(DAN, row.number)
    assert approved.status == "approved" and approved.decided_by == "dan"
    with pytest.raises(CaseRefused, match="only a requested case is decided"):
        await flow.refuse(DAN, row.number, RefuseRequest(reason="changed my mind"))

    async with db.session() as session:
        detail = await case_detail(session, row.number, now=now)
    assert [h.unit_id for h in detail.holds] == ["cam-01", "cam-02"]
    assert {h.state for h in detail.holds} == {"pending"}
    assert all(h.hold_id.startswith(row.number) for h in detail.holds)

    # The units answer commands the broker delivered (stored by ingest as for a real
    # unit): the periodic pass matches them to the holds.
    async with db.session() as session:
        hold_rows = list((await session.execute(select(CaseHoldRow))).scalars())
        for n, hold in enumerate(hold_rows):
            hold.command_id, hold.placed_at = f"cmd-{n}", now
            session.add(
                CommandRecord(
                    command_id=f"cmd-{n}",
                    unit_id=hold.unit_id,
                    action="set_hold",
                    params={},
                    issued_by="dan",
                    issued_at=now,
                    expires_at=now + timedelta(minutes=15),
                )
            )
        await session.flush()
        session.add(
            CommandAckRecord(
                unit_id="cam-01",
                command_id="cmd-0",
                status="done",
                reason="",
                result={},
                sent_at=now,
                received_at=now,
                message_seq=1,
            )
        )
        session.add(
            CommandAckRecord(
                unit_id="cam-02",
                command_id="cmd-1",
                status="failed",
                reason="disk unreadable",
                result={},
                sent_at=now,
                received_at=now,
                message_seq=1,
            )
        )
        await session.commit()
    result = await case_job(db, None, now)
    assert result.acks == 2
    assert (await case_job(db, None, now)).acks == 0  # applied once
    async with db.session() as session:
        detail = await case_detail(session, row.number, now=now)
    states = {h.unit_id: (h.state, h.state_words) for h in detail.holds}
    assert states["cam-01"] == ("held", "held on the unit")
    assert states["cam-02"][0] == "problem" and "disk unreadable" in states["cam-02"][1]

    await flow.set_outcome(MIA, row.number, OutcomeRequest(outcome="charge"))
    with pytest.raises(CaseNotPermitted):
        await flow.set_outcome(OLLY, row.number, OutcomeRequest(outcome="arrest"))
    closed = await flow.close(DAN, row.number)
    assert closed.status == "closed" and closed.outcome == "charge"
    with pytest.raises(CaseRefused):
        await flow.close(DAN, row.number)
    actions = await _audit_actions(db, row.number)
    assert actions == [
        "case.raise",
        "case.approve",
        "case.hold_acknowledged",
        "case.hold_failed",
        "case.outcome",
        "case.close",
    ]
    assert (await audit.verify(db)).ok


async def test_refusal_keeps_its_reason(db: Database, units: list[str]) -> None:
    now = datetime.now(UTC)
    flow = CaseWorkflow(db, clock=lambda: now)
    row = await flow.raise_case(OLLY, request(now))
    with pytest.raises(ValueError):
        RefuseRequest(reason="")
    refused = await flow.refuse(DORA, row.number, RefuseRequest(reason="No lawful basis given."))
    assert refused.status == "refused" and refused.refusal_reason == "No lawful basis given."
    async with db.session() as session:
        detail = await case_detail(session, row.number, now=now)
        assert detail.refusal_reason == "No lawful basis given." and detail.holds == []
        assert "No lawful basis given." in detail.timeline[-1].words


async def test_retrieval_and_release_steps(db: Database, units: list[str]) -> None:
    now = datetime.now(UTC)
    flow = CaseWorkflow(db, clock=lambda: now)
    row = await flow.raise_case(OLLY, request(now))
    async with db.session() as session:
        with pytest.raises(CaseRefused, match="only a case that is approved"):
            await mark_retrieving(session, row.id, actor="system")
    await flow.approve(DORA, row.number)
    async with db.session() as session:
        await mark_retrieving(session, row.id, actor="unit:cam-01", upload_id="up-1")
        await mark_retrieving(session, row.id, actor="unit:cam-02")  # already: no change
        await mark_retrieved(session, row.id, actor="system")
        await mark_released(session, row.id, actor="dora", exhibit="EX1")
        await mark_released(session, row.id, actor="dora", exhibit="EX2")
        await session.commit()
    actions = await _audit_actions(db, row.number)
    assert actions[-4:] == [
        "case.retrieving",
        "case.retrieved",
        "case.released",
        "case.released_again",
    ]
    async with db.session() as session:
        assert [c.number for c in await list_cases(session, now=now, status="released")] == [
            row.number
        ]


@pytest.mark.dates
async def test_sar_deadline_extension_reminder_and_overdue(db: Database, units: list[str]) -> None:
    received = datetime.now(UTC) - timedelta(hours=1)
    clock = Clock(received + timedelta(minutes=5))
    settings = EvidenceSettings(sar_reminder_days=7, reminder_webhooks=["http://127.0.0.1:9/h"])
    flow = CaseWorkflow(db, clock=clock, settings=settings)
    raised = datetime.now(UTC)
    row = await flow.raise_case(
        OLLY,
        request(
            raised,
            case_type="subject_access",
            external_ref="SAR-17",
            received_at=received,
            ranges=[
                {
                    "unit_id": "cam-01",
                    "start": raised - timedelta(hours=2),
                    "end": raised - timedelta(hours=1),
                }
            ],
        ),
    )
    day = received.astimezone(LOCAL_ZONE).date()
    last_day = calendar.monthrange(day.year + day.month // 12, day.month % 12 + 1)[1]
    expected_day = date(day.year + day.month // 12, day.month % 12 + 1, min(day.day, last_day))
    assert row.due_at is not None
    assert row.due_at.astimezone(LOCAL_ZONE).date() == expected_day
    assert row.due_at.astimezone(LOCAL_ZONE).time() == time(23, 59, 59)

    async def state() -> str:
        async with db.session() as session:
            return (await case_detail(session, row.number, now=clock.now)).summary.sar_state

    assert await state() == SarState.RUNNING
    assert (await case_job(db, None, clock.now, settings=settings)).reminded == 0

    clock.now = row.due_at - timedelta(days=6)
    assert await state() == SarState.DUE_SOON
    assert (await case_job(db, None, clock.now, settings=settings)).reminded == 1
    assert (await case_job(db, None, clock.now, settings=settings)).reminded == 0  # once

    clock.now = row.due_at + timedelta(seconds=1)
    assert await state() == SarState.OVERDUE
    assert (await case_job(db, None, clock.now, settings=settings)).overdue == 1
    assert (await case_job(db, None, clock.now, settings=settings)).overdue == 0
    async with db.session() as session:
        overdue = await list_cases(session, now=clock.now, overdue=True)
        assert [c.number for c in overdue] == [row.number]
        assert await list_cases(session, now=row.due_at - timedelta(days=1), overdue=True) == []

    with pytest.raises(CaseNotPermitted):
        await flow.extend(OLLY, row.number, ExtendRequest(months=1, reason="complex request"))
    with pytest.raises(ValueError):
        ExtendRequest(months=3, reason="too long")
    extended = await flow.extend(DORA, row.number, ExtendRequest(months=1, reason="Many units."))
    assert extended.extended_to is not None
    assert extended.extended_to.astimezone(LOCAL_ZONE).date() == add_months(day, 2)
    assert await state() == SarState.RUNNING
    with pytest.raises(CaseRefused, match="already extended"):
        await flow.extend(DORA, row.number, ExtendRequest(months=1, reason="again"))
    longest = await flow.extend(DAN, row.number, ExtendRequest(months=2, reason="Third party."))
    assert longest.extended_to is not None
    assert longest.extended_to.astimezone(LOCAL_ZONE).date() == add_months(day, 3)

    clock.now = longest.extended_to - timedelta(days=2)
    assert (await case_job(db, None, clock.now, settings=settings)).reminded == 1  # re-armed
    clock.now = longest.extended_to + timedelta(minutes=1)
    assert await state() == SarState.OVERDUE
    assert (await case_job(db, None, clock.now, settings=settings)).overdue == 1

    await flow.refuse(DAN, row.number, RefuseRequest(reason="Manifestly unfounded request."))
    assert await state() == SarState.ANSWERED
    async with db.session() as session:
        assert await list_cases(session, now=clock.now, overdue=True) == []
        notes = list((await session.execute(select(Notification))).scalars())
    assert [n.reason for n in notes] == [
        "sar_due_soon",
        "sar_overdue",
        "sar_due_soon",
        "sar_overdue",
    ]
    assert notes[0].payload["case"]["number"] == row.number
    actions = await _audit_actions(db, row.number)
    assert actions == [
        "case.raise",
        "case.sar_reminder",
        "case.sar_overdue",
        "case.extend",
        "case.extend",
        "case.sar_reminder",
        "case.sar_overdue",
        "case.refuse",
    ]
    assert (await audit.verify(db)).ok


@pytest.mark.dates
def test_sar_month_is_counted_on_the_local_calendar() -> None:
    year = datetime.now(UTC).year
    # Received on the last day of January: due on the last day of February.
    received = datetime.combine(date(year, 1, 31), time(10), LOCAL_ZONE)
    due = due_by(received).astimezone(LOCAL_ZONE)
    assert due.date() == date(year, 2, calendar.monthrange(year, 2)[1])
    # Received late in the evening in summer (BST): the local day counts, not the UTC day.
    evening = datetime.combine(date(year, 6, 30), time(23, 30), LOCAL_ZONE)
    assert evening.astimezone(UTC).date() == date(year, 6, 30)
    assert due_by(evening).astimezone(LOCAL_ZONE).date() == date(year, 7, 30)
    early = datetime.combine(date(year, 7, 1), time(0, 30), LOCAL_ZONE)
    assert early.astimezone(UTC).date() == date(year, 6, 30)  # still June in UTC
    assert due_by(early).astimezone(LOCAL_ZONE).date() == date(year, 8, 1)


async def test_evidence_kpis_count_cases_by_type_and_outcome(
    db: Database, units: list[str]
) -> None:
    now = datetime.now(UTC)
    flow = CaseWorkflow(db, clock=lambda: now)
    a = await flow.raise_case(OLLY, request(now))
    await flow.raise_case(OLLY, request(now, case_type="internal_review"))
    await flow.set_outcome(DORA, a.number, OutcomeRequest(outcome="arrest"))
    figures = await _kpis(db, now)
    assert figures.cases_raised == 2 and figures.releases == 0
    assert figures.by_type["police_request"] == 1 and figures.by_type["internal_review"] == 1
    assert figures.by_outcome["arrest"] == 1 and figures.by_outcome["none"] == 1
    earlier = await _kpis(db, now - timedelta(days=3))
    assert earlier.cases_raised == 0


async def _kpis(db: Database, around: datetime) -> EvidenceKpis:
    async with db.session() as session:
        return await evidence_kpis(session, around - timedelta(days=1), around + timedelta(days=1))
