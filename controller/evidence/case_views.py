"""What the JSON API and the pages show of cases: one set of read queries under both.

    cases = await list_cases(session, now=now, status="approved", overdue=True)
    detail = await case_detail(session, "C-2026-0007", now=now)

The views are plain data (pydantic): the API returns `model_dump(mode="json")`, the pages
render the same objects.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from controller.evidence.cases import load_case
from controller.evidence.holds import case_subject, hold_state
from controller.evidence.sar import ANSWERED, SarState, sar_state
from controller.store.audit import AuditEntry
from controller.store.evidence import (
    CaseHoldRow,
    CaseRangeRow,
    CaseRow,
    ExhibitRow,
    ReleaseRow,
    RetrievalRow,
    RetrievedFileRow,
)

__all__ = [
    "CASE_TYPE_WORDS",
    "OUTCOME_WORDS",
    "STATUS_WORDS",
    "CaseDetail",
    "CaseSummary",
    "case_detail",
    "list_cases",
]

CASE_TYPE_WORDS = {
    "police_request": "Police request",
    "subject_access": "Subject access request",
    "insurance_civil": "Insurance or civil claim",
    "internal_review": "Internal review",
}
STATUS_WORDS = {
    "requested": "Waiting for a decision",
    "approved": "Approved, footage on hold",
    "refused": "Refused",
    "retrieving": "Footage being retrieved",
    "retrieved": "Footage retrieved",
    "released": "Released",
    "closed": "Closed",
}
OUTCOME_WORDS = {
    "arrest": "Arrest",
    "charge": "Charge",
    "caution": "Caution",
    "no_further_action": "No further action",
    "disclosed": "Disclosed",
    "refused": "Refused",
    "other": "Other",
}
SAR_WORDS = {
    SarState.NOT_SAR: "",
    SarState.ANSWERED: "answered",
    SarState.RUNNING: "due",
    SarState.DUE_SOON: "due soon",
    SarState.OVERDUE: "overdue",
}
TIMELINE_LIMIT = 500


class _View(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CaseSummary(_View):
    number: str
    case_type: str
    case_type_words: str
    status: str
    status_words: str
    external_ref: str
    requester_name: str
    requester_org: str
    raised_by: str
    raised_at: datetime
    received_at: datetime | None
    due_at: datetime | None
    extended_to: datetime | None
    deadline: datetime | None
    sar_state: str
    sar_words: str
    outcome: str | None
    outcome_words: str
    units: list[str]


class RangeView(_View):
    id: int
    unit_id: str
    start: datetime
    end: datetime


class HoldView(_View):
    hold_id: str
    unit_id: str
    range_id: int
    state: str
    state_words: str
    command_id: str | None
    placed_at: datetime | None
    acked_at: datetime | None
    release_command_id: str | None
    released_at: datetime | None
    release_acked_at: datetime | None
    problem: str | None


class FileView(_View):
    name: str
    role: str
    size: int
    received_bytes: int
    status: str
    problem: str | None


class RetrievalView(_View):
    upload_id: str
    unit_id: str
    status: str
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    total_bytes: int | None
    received_bytes: int
    percent: float | None
    problem: str | None
    files: list[FileView]


class ExhibitView(_View):
    number: str
    kind: str
    created_at: datetime
    created_by: str
    manifest_sha256: str
    derived_from: str | None


class ReleaseView(_View):
    id: int
    exhibit: str
    released_at: datetime
    released_by: str
    recipient_name: str
    recipient_org: str
    reason: str
    lawful_basis: str
    reference: str
    method: str
    notes: str


class TimelineEntry(_View):
    at: datetime
    actor: str
    action: str
    words: str
    details: dict[str, Any]


class CaseDetail(_View):
    summary: CaseSummary
    requester_contact: str
    lawful_basis: str
    reason: str
    decided_by: str | None
    decided_at: datetime | None
    refusal_reason: str | None
    extension_reason: str | None
    closed_by: str | None
    closed_at: datetime | None
    ranges: list[RangeView]
    holds: list[HoldView]
    retrievals: list[RetrievalView]
    exhibits: list[ExhibitView]
    releases: list[ReleaseView]
    timeline: list[TimelineEntry]


def summary(row: CaseRow, units: list[str], *, now: datetime, reminder_days: int) -> CaseSummary:
    state = sar_state(
        case_type=row.case_type,
        status=row.status,
        due_at=row.due_at,
        extended_to=row.extended_to,
        now=now,
        reminder_days=reminder_days,
    )
    return CaseSummary(
        number=row.number,
        case_type=row.case_type,
        case_type_words=CASE_TYPE_WORDS.get(row.case_type, row.case_type),
        status=row.status,
        status_words=STATUS_WORDS.get(row.status, row.status),
        external_ref=row.external_ref,
        requester_name=row.requester_name,
        requester_org=row.requester_org,
        raised_by=row.raised_by,
        raised_at=row.raised_at,
        received_at=row.received_at,
        due_at=row.due_at,
        extended_to=row.extended_to,
        deadline=row.extended_to or row.due_at,
        sar_state=state.value,
        sar_words=SAR_WORDS[state],
        outcome=row.outcome,
        outcome_words=OUTCOME_WORDS.get(row.outcome or "", ""),
        units=units,
    )


async def _units_of(session: AsyncSession, case_ids: list[int]) -> dict[int, list[str]]:
    units: dict[int, list[str]] = {}
    if not case_ids:
        return units
    rows = await session.execute(
        select(CaseRangeRow.case_id, CaseRangeRow.unit_id)
        .where(CaseRangeRow.case_id.in_(case_ids))
        .order_by(CaseRangeRow.id)
    )
    for case_id, unit_id in rows.all():
        if unit_id not in units.setdefault(case_id, []):
            units[case_id].append(unit_id)
    return units


async def list_cases(
    session: AsyncSession,
    *,
    now: datetime,
    reminder_days: int = 7,
    status: str | None = None,
    case_type: str | None = None,
    overdue: bool = False,
    limit: int = 500,
) -> list[CaseSummary]:
    """Cases newest first, filtered by status, type, or overdue subject access requests."""
    query = select(CaseRow).order_by(CaseRow.raised_at.desc(), CaseRow.id.desc()).limit(limit)
    if status:
        query = query.where(CaseRow.status == status)
    if case_type:
        query = query.where(CaseRow.case_type == case_type)
    if overdue:
        query = query.where(
            CaseRow.case_type == "subject_access",
            CaseRow.status.not_in(ANSWERED),
            CaseRow.due_at.is_not(None),
        )
    rows = list((await session.execute(query)).scalars())
    units = await _units_of(session, [r.id for r in rows])
    views = [summary(r, units.get(r.id, []), now=now, reminder_days=reminder_days) for r in rows]
    if overdue:
        views = [v for v in views if v.sar_state == SarState.OVERDUE]
    return views


def _timeline_words(action: str, details: dict[str, Any]) -> str:
    unit = details.get("unit_id", "")
    words = {
        "case.raise": "Case raised",
        "case.approve": "Approved",
        "case.refuse": f"Refused: {details.get('reason', '')}",
        "case.extend": f"Deadline extended by {details.get('months', '?')} month(s): "
        f"{details.get('reason', '')}",
        "case.outcome": f"Outcome recorded: "
        f"{OUTCOME_WORDS.get(str(details.get('outcome')), details.get('outcome'))}",
        "case.close": "Closed",
        "case.hold_sent": f"Hold sent to {unit}",
        "case.hold_acknowledged": f"Hold confirmed by {unit}",
        "case.hold_failed": f"Hold not placed by {unit}: {details.get('reason', '')}",
        "case.hold_release_sent": f"Hold release sent to {unit}",
        "case.hold_released": f"Hold released by {unit}",
        "case.hold_release_failed": f"Hold release failed on {unit}: {details.get('reason', '')}",
        "case.hold_dropped": f"Hold on {unit} dropped before it was sent",
        "case.sar_reminder": "Reminder: the subject access request is due soon",
        "case.sar_overdue": "The subject access request is overdue",
        "case.retrieving": "Retrieval of the footage started",
        "case.retrieved": "Footage retrieved and verified",
        "case.released": "Footage released",
        "case.released_again": "Footage released again",
    }
    if action in words:
        return words[action]
    # A step recorded by retrieval or release: its own name, in words.
    text = action.split(".", 1)[-1].replace("_", " ").capitalize()
    return f"{text} ({unit})" if unit else text


async def case_detail(
    session: AsyncSession, number: str, *, now: datetime, reminder_days: int = 7
) -> CaseDetail:
    row = await load_case(session, number)
    ranges = list(
        (
            await session.execute(
                select(CaseRangeRow).where(CaseRangeRow.case_id == row.id).order_by(CaseRangeRow.id)
            )
        ).scalars()
    )
    hold_rows = list(
        (
            await session.execute(
                select(CaseHoldRow).where(CaseHoldRow.case_id == row.id).order_by(CaseHoldRow.id)
            )
        ).scalars()
    )
    retrieval_rows = list(
        (
            await session.execute(
                select(RetrievalRow).where(RetrievalRow.case_id == row.id).order_by(RetrievalRow.id)
            )
        ).scalars()
    )
    files: dict[int, list[FileView]] = {}
    if retrieval_rows:
        file_rows = await session.execute(
            select(RetrievedFileRow)
            .where(RetrievedFileRow.retrieval_id.in_([r.id for r in retrieval_rows]))
            .order_by(RetrievedFileRow.id)
        )
        for f in file_rows.scalars():
            files.setdefault(f.retrieval_id, []).append(
                FileView(
                    name=f.name,
                    role=f.role,
                    size=f.size,
                    received_bytes=f.received_bytes,
                    status=f.status,
                    problem=f.problem,
                )
            )
    exhibit_rows = list(
        (
            await session.execute(
                select(ExhibitRow).where(ExhibitRow.case_id == row.id).order_by(ExhibitRow.id)
            )
        ).scalars()
    )
    exhibit_numbers = {e.id: e.number for e in exhibit_rows}
    release_rows = list(
        (
            await session.execute(
                select(ReleaseRow)
                .where(ReleaseRow.case_id == row.id)
                .order_by(ReleaseRow.released_at)
            )
        ).scalars()
    )
    audit_rows = (
        await session.execute(
            select(AuditEntry)
            .where(AuditEntry.subject == case_subject(row.number))
            .order_by(AuditEntry.seq)
            .limit(TIMELINE_LIMIT)
        )
    ).scalars()
    timeline = []
    for entry in audit_rows:
        try:
            details = json.loads(entry.details_json)
        except ValueError:
            details = {}
        details = details if isinstance(details, dict) else {}
        timeline.append(
            TimelineEntry(
                at=entry.at,
                actor=entry.actor,
                action=entry.action,
                words=_timeline_words(entry.action, details),
                details=details,
            )
        )
    units = list(dict.fromkeys(r.unit_id for r in ranges))
    return CaseDetail(
        summary=summary(row, units, now=now, reminder_days=reminder_days),
        requester_contact=row.requester_contact,
        lawful_basis=row.lawful_basis,
        reason=row.reason,
        decided_by=row.decided_by,
        decided_at=row.decided_at,
        refusal_reason=row.refusal_reason,
        extension_reason=row.extension_reason,
        closed_by=row.closed_by,
        closed_at=row.closed_at,
        ranges=[RangeView(id=r.id, unit_id=r.unit_id, start=r.start, end=r.end) for r in ranges],
        holds=[_hold_view(h) for h in hold_rows],
        retrievals=[
            RetrievalView(
                upload_id=r.upload_id,
                unit_id=r.unit_id,
                status=r.status,
                requested_at=r.requested_at,
                started_at=r.started_at,
                finished_at=r.finished_at,
                total_bytes=r.total_bytes,
                received_bytes=r.received_bytes,
                percent=(
                    min(100.0, 100.0 * r.received_bytes / r.total_bytes) if r.total_bytes else None
                ),
                problem=r.problem,
                files=files.get(r.id, []),
            )
            for r in retrieval_rows
        ],
        exhibits=[
            ExhibitView(
                number=e.number,
                kind=e.kind,
                created_at=e.created_at,
                created_by=e.created_by,
                manifest_sha256=e.manifest_sha256,
                derived_from=exhibit_numbers.get(e.derived_from_id)
                if e.derived_from_id is not None
                else None,
            )
            for e in exhibit_rows
        ],
        releases=[
            ReleaseView(
                id=r.id,
                exhibit=exhibit_numbers.get(r.exhibit_id, f"#{r.exhibit_id}"),
                released_at=r.released_at,
                released_by=r.released_by,
                recipient_name=r.recipient_name,
                recipient_org=r.recipient_org,
                reason=r.reason,
                lawful_basis=r.lawful_basis,
                reference=r.reference,
                method=r.method,
                notes=r.notes,
            )
            for r in release_rows
        ],
        timeline=timeline,
    )


def _hold_view(hold: CaseHoldRow) -> HoldView:
    state, words = hold_state(hold)
    return HoldView(
        hold_id=hold.hold_id,
        unit_id=hold.unit_id,
        range_id=hold.range_id,
        state=state,
        state_words=words,
        command_id=hold.command_id,
        placed_at=hold.placed_at,
        acked_at=hold.acked_at,
        release_command_id=hold.release_command_id,
        released_at=hold.released_at,
        release_acked_at=hold.release_acked_at,
        problem=hold.problem,
    )
