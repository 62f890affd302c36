"""The review log and the release log ("review or data released logs" of the control room,
for continuity of evidence), filtered, and as CSV; and the evidence figures of the KPI page.

    entries = await review_entries(session, LogFilter(start=..., end=..., case="C-2026-0007"))
    text = review_csv(entries)

Times in the CSV are local (Europe/London) ISO 8601 with their UTC offset, so a reader
sees the clock of the control room and can still place each row exactly. A cell that a
spreadsheet would run as a formula (starting with =, +, - or @) is written with a
leading apostrophe.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from pydantic import BaseModel, ConfigDict
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from controller.evidence.sar import LOCAL_ZONE
from controller.store.evidence import (
    CASE_OUTCOMES,
    CASE_TYPES,
    CaseRow,
    ExhibitRow,
    ReleaseRow,
    ReviewLogRow,
)

__all__ = [
    "EvidenceKpis",
    "LogFilter",
    "ReleaseEntry",
    "ReviewEntry",
    "evidence_kpis",
    "local_days",
    "release_csv",
    "release_entries",
    "review_csv",
    "review_entries",
]

LOG_LIMIT = 5000
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True, slots=True)
class LogFilter:
    """Rows at or after `start` and before `end`; of one case (its number); by one user
    (review log) or to one recipient (release log: name or organisation, any part)."""

    start: datetime | None = None
    end: datetime | None = None
    case: str = ""
    person: str = ""
    limit: int = LOG_LIMIT


class _View(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReviewEntry(_View):
    at: datetime
    user: str
    case: str
    exhibit: str | None
    action: str
    client: str
    detail: str


class ReleaseEntry(_View):
    released_at: datetime
    case: str
    exhibit: str
    recipient_name: str
    recipient_org: str
    reason: str
    lawful_basis: str
    reference: str
    method: str
    released_by: str
    notes: str


async def review_entries(session: AsyncSession, where: LogFilter) -> list[ReviewEntry]:
    query = (
        select(ReviewLogRow, CaseRow.number, ExhibitRow.number)
        .join(CaseRow, CaseRow.id == ReviewLogRow.case_id)
        .outerjoin(ExhibitRow, ExhibitRow.id == ReviewLogRow.exhibit_id)
        .order_by(ReviewLogRow.at.desc(), ReviewLogRow.id.desc())
        .limit(where.limit)
    )
    if where.start is not None:
        query = query.where(ReviewLogRow.at >= where.start)
    if where.end is not None:
        query = query.where(ReviewLogRow.at < where.end)
    if where.case:
        query = query.where(CaseRow.number == where.case)
    if where.person:
        query = query.where(ReviewLogRow.user == where.person)
    rows = await session.execute(query)
    return [
        ReviewEntry(
            at=r.at,
            user=r.user,
            case=case,
            exhibit=exhibit,
            action=r.action,
            client=r.client,
            detail=r.detail,
        )
        for r, case, exhibit in rows.all()
    ]


async def release_entries(session: AsyncSession, where: LogFilter) -> list[ReleaseEntry]:
    query = (
        select(ReleaseRow, CaseRow.number, ExhibitRow.number)
        .join(CaseRow, CaseRow.id == ReleaseRow.case_id)
        .join(ExhibitRow, ExhibitRow.id == ReleaseRow.exhibit_id)
        .order_by(ReleaseRow.released_at.desc(), ReleaseRow.id.desc())
        .limit(where.limit)
    )
    if where.start is not None:
        query = query.where(ReleaseRow.released_at >= where.start)
    if where.end is not None:
        query = query.where(ReleaseRow.released_at < where.end)
    if where.case:
        query = query.where(CaseRow.number == where.case)
    if where.person:
        pattern = f"%{_like_escape(where.person.lower())}%"
        query = query.where(
            or_(
                func.lower(ReleaseRow.recipient_name).like(pattern, escape="\\"),
                func.lower(ReleaseRow.recipient_org).like(pattern, escape="\\"),
            )
        )
    rows = await session.execute(query)
    return [
        ReleaseEntry(
            released_at=r.released_at,
            case=case,
            exhibit=exhibit,
            recipient_name=r.recipient_name,
            recipient_org=r.recipient_org,
            reason=r.reason,
            lawful_basis=r.lawful_basis,
            reference=r.reference,
            method=r.method,
            released_by=r.released_by,
            notes=r.notes,
        )
        for r, case, exhibit in rows.all()
    ]


def local_days(first: date | None, last: date | None) -> tuple[datetime | None, datetime | None]:
    """The instants that bound the local (Europe/London) days `first` to `last` inclusive."""
    start = None if first is None else datetime.combine(first, time(), LOCAL_ZONE)
    end = None if last is None else datetime.combine(last + timedelta(days=1), time(), LOCAL_ZONE)
    return start, end


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(LOCAL_ZONE).isoformat(timespec="seconds")
    text = str(value)
    return "'" + text if text.startswith(_FORMULA) else text


def _csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(v) for v in row])
    return out.getvalue()


def review_csv(entries: Iterable[ReviewEntry]) -> str:
    return _csv(
        ("when (Europe/London)", "user", "case", "exhibit", "action", "client", "detail"),
        ((e.at, e.user, e.case, e.exhibit, e.action, e.client, e.detail) for e in entries),
    )


def release_csv(entries: Iterable[ReleaseEntry]) -> str:
    return _csv(
        (
            "released (Europe/London)",
            "case",
            "exhibit",
            "recipient",
            "organisation",
            "reason",
            "lawful basis",
            "reference",
            "method",
            "released by",
            "notes",
        ),
        (
            (
                e.released_at,
                e.case,
                e.exhibit,
                e.recipient_name,
                e.recipient_org,
                e.reason,
                e.lawful_basis,
                e.reference,
                e.method,
                e.released_by,
                e.notes,
            )
            for e in entries
        ),
    )


# ------------------------------------------------------------------------------ KPIs


@dataclass(frozen=True, slots=True)
class EvidenceKpis:
    """Evidence figures of [start, end): releases in the period (footage released, the
    "recorded material seized" of partner reports) and the cases raised in the period,
    by type and by outcome."""

    releases: int
    exhibits_released: int
    cases_released: int
    cases_raised: int
    by_type: dict[str, int] = field(default_factory=dict)
    by_outcome: dict[str, int] = field(default_factory=dict)


async def evidence_kpis(session: AsyncSession, start: datetime, end: datetime) -> EvidenceKpis:
    if end <= start:
        raise ValueError("the period must end after it starts")
    released = (
        await session.execute(
            select(ReleaseRow.case_id, ReleaseRow.exhibit_id).where(
                ReleaseRow.released_at >= start, ReleaseRow.released_at < end
            )
        )
    ).all()
    case = aliased(CaseRow)
    raised = (
        await session.execute(
            select(case.case_type, case.outcome).where(
                case.raised_at >= start, case.raised_at < end
            )
        )
    ).all()
    types = Counter(t for t, _ in raised)
    outcomes = Counter(o or "none" for _, o in raised)
    return EvidenceKpis(
        releases=len(released),
        exhibits_released=len({e for _, e in released}),
        cases_released=len({c for c, _ in released}),
        cases_raised=len(raised),
        by_type={t: types.get(t, 0) for t in CASE_TYPES},
        by_outcome={o: outcomes.get(o, 0) for o in (*CASE_OUTCOMES, "none")},
    )
