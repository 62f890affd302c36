"""Deployments as people look them up, in the JSON API and on the pages: filtered, the
requests awaiting a decision, the reviews coming due; and as rows of a table, for the
manager's queue, a location's history and a unit's page: each with its location's name,
the queue sorted into what needs a decision, what is due for review, what is live,
drafts and recent decisions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from controller.deployments.errors import UnknownDeployment
from controller.store.deployments import (
    LIVE_STATUSES,
    DeploymentRow,
    LocationRow,
    get_deployment,
    list_deployments,
)

__all__ = [
    "DECIDED",
    "PENDING_OR_LIVE",
    "DeploymentLine",
    "Queue",
    "awaiting_decision",
    "deployment_queue",
    "deployment_with_location",
    "find_deployments",
    "lines",
    "overlapping",
    "reviews_due_by",
    "unit_deployments",
]

DECIDED = ("rejected", "not_deployed", "ended", "revoked")
RECENT = 20
QUEUE_READ = 2000
UNIT_HISTORY = 50


@dataclass(frozen=True, slots=True)
class DeploymentLine:
    """One deployment as a row of a table."""

    id: str
    unit_id: str
    location_id: int
    location: str
    state: str
    start: datetime
    end: datetime
    review: datetime
    residual_risk: str
    created_by: str
    submitted_by: str | None
    submitted_at: datetime | None
    decided_by: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class Queue:
    submitted: list[DeploymentLine]
    reviews_due: list[DeploymentLine]
    live: list[DeploymentLine]
    drafts: list[DeploymentLine]
    decided: list[DeploymentLine]


async def find_deployments(
    session: AsyncSession,
    *,
    statuses: Sequence[str] | None = None,
    unit_id: str | None = None,
    location_id: int | None = None,
) -> list[DeploymentRow]:
    """Deployments in any of `statuses`, of one unit, at one location (each when given),
    newest first."""
    return await list_deployments(
        session, statuses=statuses, unit_id=unit_id, location_id=location_id
    )


async def awaiting_decision(session: AsyncSession) -> list[DeploymentRow]:
    """Submitted requests, the longest waiting first."""
    rows = await list_deployments(session, statuses=["submitted"])
    return sorted(rows, key=lambda r: r.submitted_at or r.created_at)


async def reviews_due_by(session: AsyncSession, horizon: datetime) -> list[DeploymentRow]:
    """Live deployments whose review is due by `horizon`, the soonest first."""
    rows = await list_deployments(session, statuses=LIVE_STATUSES, review_before=horizon)
    return sorted(rows, key=lambda r: r.review_due)


async def _names(session: AsyncSession, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = await session.execute(
        select(LocationRow.id, LocationRow.name).where(LocationRow.id.in_(ids))
    )
    return {i: n for i, n in rows.all()}


def _line(row: DeploymentRow, names: dict[int, str]) -> DeploymentLine:
    return DeploymentLine(
        id=row.id,
        unit_id=row.unit_id,
        location_id=row.location_id,
        location=names.get(row.location_id, f"#{row.location_id}"),
        state=row.status,
        start=row.planned_start,
        end=row.planned_end,
        review=row.review_due,
        residual_risk=row.residual_risk,
        created_by=row.created_by,
        submitted_by=row.submitted_by,
        submitted_at=row.submitted_at,
        decided_by=row.decided_by or row.ended_by,
        reason=row.end_reason or row.decision_reason,
    )


async def lines(session: AsyncSession, rows: list[DeploymentRow]) -> list[DeploymentLine]:
    """`rows` as table rows, each with its location's name."""
    names = await _names(session, {r.location_id for r in rows})
    return [_line(r, names) for r in rows]


async def unit_deployments(session: AsyncSession, unit_id: str) -> list[DeploymentLine]:
    """The unit's latest deployments, newest first."""
    return await lines(
        session, await list_deployments(session, unit_id=unit_id, limit=UNIT_HISTORY)
    )


async def deployment_with_location(
    session: AsyncSession, deployment_id: str
) -> tuple[DeploymentRow, LocationRow | None, DeploymentLine]:
    """The deployment, its location and its table row; `UnknownDeployment` if none."""
    row = await get_deployment(session, deployment_id)
    if row is None:
        raise UnknownDeployment(deployment_id)
    location = await session.get(LocationRow, row.location_id)
    return row, location, (await lines(session, [row]))[0]


#: Requests that hold, or may come to hold, a unit for their planned dates.
PENDING_OR_LIVE = ("draft", "submitted", *LIVE_STATUSES)


async def overlapping(
    session: AsyncSession,
    unit_id: str,
    start: datetime,
    end: datetime,
    *,
    excluding: str | None = None,
) -> list[DeploymentLine]:
    """Other requests and deployments of `unit_id` (drafts, submitted, approved, live)
    whose planned dates overlap [start, end), the earliest first."""
    query = select(DeploymentRow).where(
        DeploymentRow.unit_id == unit_id,
        DeploymentRow.status.in_(PENDING_OR_LIVE),
        DeploymentRow.planned_start < end,
        DeploymentRow.planned_end > start,
    )
    if excluding is not None:
        query = query.where(DeploymentRow.id != excluding)
    rows = list((await session.execute(query.order_by(DeploymentRow.planned_start))).scalars())
    return await lines(session, rows)


async def deployment_queue(session: AsyncSession, *, now: datetime, reminder_days: int) -> Queue:
    """The manager's queue: submitted requests (oldest first), live deployments whose review
    is due within `reminder_days`, every live one, drafts and the latest decisions."""
    rows = await list_deployments(session, limit=QUEUE_READ)
    all_lines = await lines(session, rows)
    soon = now + timedelta(days=reminder_days)
    live = [d for d in all_lines if d.state in LIVE_STATUSES]
    submitted = sorted(
        (d for d in all_lines if d.state == "submitted"),
        key=lambda d: d.submitted_at or d.start,
    )
    return Queue(
        submitted=submitted,
        reviews_due=sorted(
            (d for d in live if d.state == "review_due" or d.review <= soon),
            key=lambda d: d.review,
        ),
        live=live,
        drafts=[d for d in all_lines if d.state == "draft"],
        decided=[d for d in all_lines if d.state in DECIDED][:RECENT],
    )
