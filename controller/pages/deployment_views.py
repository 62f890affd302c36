"""Deployment data as the pages need it: the workflow of the running app, the rows of the
manager's queue, and a unit's deployments."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from fastapi import Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from controller.api.deployment_routes import workflow_for
from controller.deployments.workflow import DeploymentWorkflow
from controller.store.deployments import (
    LIVE_STATUSES,
    DeploymentRow,
    LocationRow,
    list_deployments,
)

__all__ = ["DeploymentLine", "Queue", "deployment_queue", "unit_deployments", "workflow"]

DECIDED = ("rejected", "not_deployed", "ended", "revoked")
RECENT = 20


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


def workflow(request: Request) -> DeploymentWorkflow:
    """The deployment workflow over the app's database and broker link."""
    return workflow_for(request)


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
    names = await _names(session, {r.location_id for r in rows})
    return [_line(r, names) for r in rows]


async def unit_deployments(session: AsyncSession, unit_id: str) -> list[DeploymentLine]:
    return await lines(session, await list_deployments(session, unit_id=unit_id, limit=50))


async def deployment_queue(session: AsyncSession, *, now: datetime, reminder_days: int) -> Queue:
    rows = await list_deployments(session, limit=2000)
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
