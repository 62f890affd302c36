"""The periodic pass over cases: `await case_job(db, link, now, settings=...)`, run by the
controller's service beside its other periodic jobs.

Each pass:
- a subject access request whose deadline is within `sar_reminder_days` gets its
  reminder once (audit, log, and a webhook notification to each `reminder_webhooks` URL
  through the notifier, as deployment reviews do); one whose deadline has passed
  unanswered is recorded overdue once. An extension re-arms both;
- acknowledgements of holds not applied yet are applied (`holds.apply_stored_acks`);
- holds and releases not sent yet, or whose command expired unanswered, are sent.

With PostgreSQL and several controllers, one pass runs at a time (advisory lock); the
others skip that round.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from controller import audit
from controller.evidence import holds
from controller.evidence.sar import ANSWERED, LOCAL_ZONE
from controller.evidence.settings import EvidenceSettings
from controller.link import ControllerLink
from controller.store.base import Database
from controller.store.evidence import CaseRow
from controller.store.fleet import Notification

__all__ = ["CasePass", "case_job"]

log = logging.getLogger(__name__)

SYSTEM = "system"
_JOB_LOCK = 0x43435456_CA5F


@dataclass(frozen=True, slots=True)
class CasePass:
    reminded: int = 0
    overdue: int = 0
    acks: int = 0
    holds_sent: int = 0


def _payload(row: CaseRow, event: str, deadline: datetime) -> dict[str, Any]:
    return {
        "event": f"case.{event}",
        "case": {
            "number": row.number,
            "case_type": row.case_type,
            "status": row.status,
            "external_ref": row.external_ref,
            "received_at": row.received_at.isoformat() if row.received_at else None,
            "deadline": deadline.isoformat(),
            "deadline_local": f"{deadline.astimezone(LOCAL_ZONE):%d %b %Y %H:%M}",
        },
    }


async def case_job(
    db: Database,
    link: ControllerLink | None,
    now: datetime,
    *,
    settings: EvidenceSettings | None = None,
) -> CasePass:
    settings = settings or EvidenceSettings()
    reminded = overdue = acks = 0
    async with db.session() as session:
        if not db.is_sqlite:
            got = await session.scalar(
                text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _JOB_LOCK}
            )
            if not got:
                return CasePass()
        open_sars = await session.execute(
            select(CaseRow).where(
                CaseRow.case_type == "subject_access",
                CaseRow.due_at.is_not(None),
                CaseRow.status.not_in(ANSWERED),
            )
        )
        for row in open_sars.scalars():
            deadline = row.extended_to or row.due_at
            assert deadline is not None
            subject = holds.case_subject(row.number)
            if now > deadline and row.overdue_at is None:
                row.overdue_at = now
                await audit.record(
                    session,
                    actor=SYSTEM,
                    action="case.sar_overdue",
                    subject=subject,
                    details={"deadline": deadline.isoformat(), "status": row.status},
                    at=now,
                )
                _notify(session, settings, row, "sar_overdue", deadline, now)
                log.warning(
                    "case=%s subject access request overdue since %s",
                    row.number,
                    deadline.isoformat(),
                )
                overdue += 1
            elif (
                now <= deadline
                and row.reminded_at is None
                and deadline - now <= timedelta(days=settings.sar_reminder_days)
            ):
                row.reminded_at = now
                await audit.record(
                    session,
                    actor=SYSTEM,
                    action="case.sar_reminder",
                    subject=subject,
                    details={"deadline": deadline.isoformat(), "status": row.status},
                    at=now,
                )
                _notify(session, settings, row, "sar_due_soon", deadline, now)
                log.warning(
                    "case=%s subject access request due %s", row.number, deadline.isoformat()
                )
                reminded += 1
        acks = await holds.apply_stored_acks(session)
        await session.commit()
    sent = await holds.send_pending(db, link, now=now, actor=SYSTEM)
    return CasePass(reminded, overdue, acks, sent)


def _notify(
    session: AsyncSession,
    settings: EvidenceSettings,
    row: CaseRow,
    event: str,
    deadline: datetime,
    now: datetime,
) -> None:
    for url in settings.reminder_webhooks:
        session.add(
            Notification(
                callout_id=None,
                channel="webhook",
                target=url,
                reason=event,
                status="pending",
                attempts=0,
                last_error="",
                created_at=now,
                next_attempt_at=now,
                payload=_payload(row, event, deadline),
            )
        )
