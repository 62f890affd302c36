"""Evidential holds of cases on their units: sent as signed `set_hold` commands when a case
is approved, released with `release_hold` when it is closed, and matched with the unit's
acknowledgements.

Each range of an approved case has one row in `case_holds`, made in the transaction that
approves the case, with the hold id the unit will know it by. The commands go out after
that commit (`send_pending`), one hold per transaction; a hold whose command could not be
sent (broker away), or expired on the way without an answer (the unit was offline for
longer than a command lives), is sent again by the periodic job with a fresh command and
the same hold id (placing the same hold again is a no-op on the unit).

An acknowledgement is applied when ingest stores it (`apply_ack`, from
`controller.fleet.unit_reports`) and again by the periodic job (`apply_stored_acks`): an ack
that arrives before the transaction that recorded its command has committed is matched
all the same. `done` marks the hold placed (or released) on the unit; `rejected` or
`failed` keeps the unit's reason as the hold's problem. Every send and every answer is
written to the audit chain under the case.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from controller import audit
from controller.errors import ConfigError, LinkError
from controller.fleet.commands import release_hold, set_hold
from controller.link import ControllerLink
from controller.store.base import Database
from controller.store.evidence import CaseHoldRow, CaseRangeRow, CaseRow
from controller.store.reports import CommandAckRecord, CommandRecord

__all__ = [
    "HOLDING_STATUSES",
    "apply_ack",
    "apply_stored_acks",
    "case_subject",
    "hold_state",
    "send_pending",
]

log = logging.getLogger(__name__)

#: Case statuses in which the case's holds must be in place on the units.
HOLDING_STATUSES = ("approved", "retrieving", "retrieved", "released")
_FINAL = ("done", "rejected", "failed")


def case_subject(number: str) -> str:
    """The audit subject of a case: every step of it is found under this."""
    return f"case:{number}"


def hold_state(hold: CaseHoldRow) -> tuple[str, str]:
    """The hold's state and the same in plain words."""
    if hold.release_acked_at is not None:
        return "released", "released on the unit"
    if hold.released_at is not None:
        if hold.problem:
            return "problem", f"release not confirmed: {hold.problem}"
        return "releasing", "release sent, waiting for the unit to confirm"
    if hold.acked_at is not None:
        return "held", "held on the unit"
    if hold.problem:
        return "problem", f"not held: {hold.problem}"
    if hold.placed_at is not None:
        return "sent", "sent, waiting for the unit to confirm"
    return "pending", "waiting to be sent (the unit or the broker is not reachable yet)"


async def _expired_unanswered(session: AsyncSession, command_id: str, now: datetime) -> bool:
    command = await session.get(CommandRecord, command_id)
    if command is None or command.expires_at >= now:
        return False
    answered = await session.scalar(
        select(CommandAckRecord.id).where(CommandAckRecord.command_id == command_id).limit(1)
    )
    return answered is None


async def _due(session: AsyncSession, now: datetime, case_id: int | None) -> list[int]:
    """Holds whose set_hold or release_hold must be sent (again)."""
    query = (
        select(CaseHoldRow, CaseRow.status)
        .join(CaseRow, CaseRow.id == CaseHoldRow.case_id)
        .where(
            CaseHoldRow.release_acked_at.is_(None),
            or_(
                and_(
                    CaseRow.status.in_(HOLDING_STATUSES),
                    CaseHoldRow.acked_at.is_(None),
                    CaseHoldRow.problem.is_(None),
                ),
                and_(CaseRow.status == "closed", CaseHoldRow.problem.is_(None)),
            ),
        )
        .order_by(CaseHoldRow.id)
    )
    if case_id is not None:
        query = query.where(CaseHoldRow.case_id == case_id)
    due = []
    for hold, status in (await session.execute(query)).all():
        command_id = hold.release_command_id if status == "closed" else hold.command_id
        if command_id is None or await _expired_unanswered(session, command_id, now):
            due.append(hold.id)
    return due


async def send_pending(
    db: Database,
    link: ControllerLink | None,
    *,
    now: datetime,
    actor: str,
    case_id: int | None = None,
) -> int:
    """Send every hold (or release) that is due, of one case or of all; the number sent.
    Stops at the first send the broker refuses: the periodic job tries again."""
    if link is None or link.signer is None:
        return 0
    async with db.session() as session:
        due = await _due(session, now, case_id)
    sent = 0
    for hold_id in due:
        try:
            if await _send_one(db, link, hold_id, now=now, actor=actor):
                sent += 1
        except (LinkError, ConfigError) as exc:
            log.warning("holds not sent now, will retry: %s", exc)
            break
    return sent


async def _send_one(
    db: Database, link: ControllerLink, hold_row_id: int, *, now: datetime, actor: str
) -> bool:
    async with db.session() as session:
        hold = await session.get(CaseHoldRow, hold_row_id, with_for_update=True)
        if hold is None:
            return False
        case = await session.get(CaseRow, hold.case_id)
        span = await session.get(CaseRangeRow, hold.range_id)
        if case is None or span is None:
            return False
        subject = case_subject(case.number)
        # Due when listed; another controller (or pass) may have sent it since.
        sent = hold.release_command_id if case.status == "closed" else hold.command_id
        if hold.release_acked_at is not None or hold.problem is not None:
            return False
        if sent is not None and not await _expired_unanswered(session, sent, now):
            return False
        if case.status not in HOLDING_STATUSES and case.status != "closed":
            return False
        if case.status != "closed" and hold.acked_at is not None:
            return False
        if case.status == "closed":
            if hold.command_id is None:
                # Never sent to the unit: there is nothing there to release.
                hold.released_at = hold.release_acked_at = now
                await audit.record(
                    session,
                    actor=actor,
                    action="case.hold_dropped",
                    subject=subject,
                    details={
                        "hold_id": hold.hold_id,
                        "unit_id": hold.unit_id,
                        "why": "the case closed before the hold reached the unit",
                    },
                    at=now,
                )
                await session.commit()
                return True
            command = await release_hold(
                link, session, hold.unit_id, hold_id=hold.hold_id, actor=actor
            )
            hold.release_command_id = command.body.command_id
            hold.released_at = now
            action = "case.hold_release_sent"
        elif case.status in HOLDING_STATUSES:
            command = await set_hold(
                link,
                session,
                hold.unit_id,
                hold_id=hold.hold_id,
                start=span.start,
                end=span.end,
                reference=case.number,
                actor=actor,
            )
            hold.command_id = command.body.command_id
            hold.placed_at = now
            action = "case.hold_sent"
        else:
            return False
        await audit.record(
            session,
            actor=actor,
            action=action,
            subject=subject,
            details={
                "hold_id": hold.hold_id,
                "unit_id": hold.unit_id,
                "command_id": command.body.command_id,
                "start": span.start.isoformat(),
                "end": span.end.isoformat(),
            },
            at=now,
        )
        await session.commit()
    log.info("case=%s hold=%s unit=%s %s", case.number, hold.hold_id, hold.unit_id, action)
    return True


async def apply_ack(
    session: AsyncSession,
    *,
    unit_id: str,
    command_id: str,
    status: str,
    reason: str,
    at: datetime,
) -> bool:
    """Apply one of a unit's answers to the hold it concerns, in the caller's transaction.
    False when it concerns no hold, is not final, or was applied already."""
    if status not in _FINAL:
        return False
    hold = await session.scalar(
        select(CaseHoldRow).where(
            CaseHoldRow.unit_id == unit_id,
            or_(CaseHoldRow.command_id == command_id, CaseHoldRow.release_command_id == command_id),
        )
    )
    if hold is None:
        return False
    case = await session.get(CaseRow, hold.case_id)
    if case is None:  # pragma: no cover - a hold row always has its case
        return False
    releasing = hold.release_command_id == command_id
    if releasing and hold.release_acked_at is not None:
        return False
    if not releasing and (hold.acked_at is not None or hold.problem is not None):
        return False
    details = {"hold_id": hold.hold_id, "unit_id": unit_id, "command_id": command_id}
    if status == "done":
        if releasing:
            hold.release_acked_at = at
            action = "case.hold_released"
        else:
            hold.acked_at = at
            action = "case.hold_acknowledged"
    else:
        hold.problem = f"the unit {'refused' if status == 'rejected' else 'failed'}: " + (
            reason or "no reason given"
        )
        action = "case.hold_release_failed" if releasing else "case.hold_failed"
        details["reason"] = reason
    await audit.record(
        session,
        actor=f"unit:{unit_id}",
        action=action,
        subject=case_subject(case.number),
        details=details,
        at=at,
    )
    log.info("case=%s hold=%s unit=%s %s", case.number, hold.hold_id, unit_id, action)
    return True


async def apply_stored_acks(session: AsyncSession, *, case_id: int | None = None) -> int:
    """Apply stored acknowledgements not yet applied to their holds; the number applied."""
    waiting = select(CaseHoldRow).where(
        CaseHoldRow.release_acked_at.is_(None),
        or_(
            and_(
                CaseHoldRow.command_id.is_not(None),
                CaseHoldRow.acked_at.is_(None),
                CaseHoldRow.problem.is_(None),
            ),
            CaseHoldRow.release_command_id.is_not(None),
        ),
    )
    if case_id is not None:
        waiting = waiting.where(CaseHoldRow.case_id == case_id)
    holds = list((await session.execute(waiting)).scalars())
    ids = [c for h in holds for c in (h.command_id, h.release_command_id) if c is not None]
    if not ids:
        return 0
    acks = (
        await session.execute(
            select(CommandAckRecord)
            .where(CommandAckRecord.command_id.in_(ids), CommandAckRecord.status.in_(_FINAL))
            .order_by(CommandAckRecord.received_at, CommandAckRecord.id)
        )
    ).scalars()
    applied = 0
    for ack in acks:
        if await apply_ack(
            session,
            unit_id=ack.unit_id,
            command_id=ack.command_id,
            status=ack.status,
            reason=ack.reason,
            at=ack.received_at,
        ):
            applied += 1
    return applied
