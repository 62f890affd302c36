"""The periodic review job: `await review_job(db, link, now)`, called by the controller's
service with its other periodic jobs (under the same PostgreSQL advisory lock).

Each pass:
- an approved deployment whose planned start has come becomes active;
- a live deployment whose review falls due within `reminder_days` becomes `review_due`
  and its reminder is recorded once (audit, log, and the policy's webhooks);
- a review date passed without renewal: the authorization has lapsed on the unit (it
  closes its gate at `valid_until` by itself); recorded once as `lapsed`;
- a deployment past its planned end is ended;
- any authorization or revocation the broker has not acknowledged yet is published.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from controller import audit
from controller.deployments.authorization import Publisher, publish_pending
from controller.deployments.models import DeploymentPolicy
from controller.store.base import Database
from controller.store.deployments import LIVE_STATUSES, DeploymentRow, list_deployments
from controller.store.fleet import Notification

__all__ = ["ReviewPass", "review_job"]

log = logging.getLogger(__name__)
SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class ReviewPass:
    activated: int = 0
    reminded: int = 0
    lapsed: int = 0
    ended: int = 0
    published: int = 0


def _payload(row: DeploymentRow, event: str) -> dict[str, Any]:
    return {
        "event": f"deployment.{event}",
        "deployment": {
            "id": row.id,
            "unit_id": row.unit_id,
            "location_id": row.location_id,
            "status": row.status,
            "review_due": row.review_due.isoformat(),
            "planned_end": row.planned_end.isoformat(),
        },
    }


async def _record(
    session: AsyncSession, row: DeploymentRow, action: str, now: datetime, **details: Any
) -> None:
    await audit.record(
        session,
        actor=SYSTEM,
        action=f"deployment.{action}",
        subject=f"deployment:{row.id}",
        details={"status": row.status, "unit_id": row.unit_id, **details},
        at=now,
    )


async def review_job(
    db: Database,
    link: Publisher | None,
    now: datetime,
    *,
    policy: DeploymentPolicy | None = None,
) -> ReviewPass:
    policy = policy or DeploymentPolicy()
    activated = reminded = lapsed = ended = 0
    async with db.session() as session:
        for row in await list_deployments(session, statuses=LIVE_STATUSES, limit=100_000):
            if row.planned_end <= now:
                row.status, row.ended_at, row.ended_by = "ended", now, SYSTEM
                row.end_reason, row.updated_at = "planned end reached", now
                await _record(session, row, "expired", now, reason=row.end_reason)
                ended += 1
                continue
            if row.status == "approved" and row.planned_start <= now:
                row.status, row.updated_at = "active", now
                await _record(session, row, "activate", now)
                activated += 1
            remind_at = row.review_due - timedelta(days=policy.reminder_days)
            if row.status == "active" and now >= remind_at and row.review_reminded_at is None:
                row.status, row.review_reminded_at, row.updated_at = "review_due", now, now
                await _record(
                    session, row, "review_reminder", now, review_due=row.review_due.isoformat()
                )
                for url in policy.reminder_webhooks:
                    session.add(Notification(
                        callout_id=None, channel="webhook", target=url, reason="review_due",
                        status="pending", attempts=0, last_error="", created_at=now,
                        next_attempt_at=now, payload=_payload(row, "review_due"),
                    ))  # fmt: skip
                log.warning(
                    "deployment review due id=%s unit=%s due=%s",
                    row.id,
                    row.unit_id,
                    row.review_due.isoformat(),
                )
                reminded += 1
            if row.review_due <= now and row.lapsed_at is None:
                row.lapsed_at, row.updated_at = now, now
                await _record(
                    session,
                    row,
                    "lapsed",
                    now,
                    review_due=row.review_due.isoformat(),
                    authorization_id=row.authorization_id,
                )
                log.warning(
                    "deployment review overdue, authorization lapsed id=%s unit=%s",
                    row.id,
                    row.unit_id,
                )
                lapsed += 1
        await session.commit()
    published = await publish_pending(db, link)
    return ReviewPass(activated, reminded, lapsed, ended, published)
