"""Asking units for a case's footage: one retrieval per unit of an approved case, sent as a
signed `upload_evidence` command naming the upload id, the case number and the case's
time ranges on that unit. The unit uploads to the evidence endpoint in its own config
(`controller.evidence.receiver`); `controller.evidence.uploads` takes and checks the files.

`request_retrieval` (called when a case is approved) records the retrievals and sends
their commands after that commit; a command the broker would not take, or that expired
on the way without an answer (the unit was offline longer than a command lives), is sent
again by `retrieval_job` with a fresh command id and the same upload id (the unit then
goes on with the upload it has, or starts it). A unit's `rejected` or `failed` answer
marks the retrieval failed with the unit's reason (`apply_ack`, from ingest, and again by
the job for answers that arrived before their command's transaction committed). Every
send and answer is in the audit chain under the case.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from controller import audit
from controller.errors import ConfigError, LinkError
from controller.evidence.holds import case_subject
from controller.fleet.commands import send_command
from controller.link import ControllerLink
from controller.store.base import Database, utcnow
from controller.store.evidence import CaseRangeRow, CaseRow, RetrievalRow
from controller.store.reports import CommandAckRecord, CommandRecord
from protocol.messages import TimeRange, UploadEvidence

__all__ = [
    "COMMAND_TTL",
    "apply_ack",
    "apply_stored_acks",
    "request_retrieval",
    "retrieval_job",
    "send_pending",
]

log = logging.getLogger(__name__)

#: How long an upload command stays valid on its way to the unit.
COMMAND_TTL = timedelta(hours=6)
#: Case states in which footage is still being fetched.
FETCHING = ("approved", "retrieving")
_FINAL = ("done", "rejected", "failed")


async def request_retrieval(
    db: Database,
    link: ControllerLink | None,
    *,
    case_id: int,
    actor: str,
    now: datetime | None = None,
) -> list[str]:
    """Record a retrieval for each unit of the case that has none yet (or whose last one
    failed), then send what is due. Returns the upload ids recorded now."""
    now = now or utcnow()
    made: list[str] = []
    async with db.session() as session:
        case = await session.get(CaseRow, case_id, with_for_update=True)
        if case is None or case.status not in FETCHING:
            return []
        units = (
            await session.execute(
                select(CaseRangeRow.unit_id)
                .where(CaseRangeRow.case_id == case_id)
                .distinct()
                .order_by(CaseRangeRow.unit_id)
            )
        ).scalars()
        existing = (
            await session.execute(
                select(RetrievalRow.unit_id, RetrievalRow.status).where(
                    RetrievalRow.case_id == case_id
                )
            )
        ).all()
        live = {unit for unit, status in existing if status not in ("failed",)}
        for unit_id in units:
            if unit_id in live:
                continue
            upload_id = f"up-{uuid.uuid4().hex}"
            session.add(
                RetrievalRow(
                    case_id=case_id,
                    unit_id=unit_id,
                    upload_id=upload_id,
                    requested_at=now,
                    status="requested",
                    received_bytes=0,
                    source="upload",
                )
            )
            await audit.record(
                session,
                actor=actor,
                action="evidence.retrieval_requested",
                subject=case_subject(case.number),
                details={"upload_id": upload_id, "unit_id": unit_id},
                at=now,
            )
            made.append(upload_id)
        await session.commit()
    if made:
        log.info("case=%s retrievals requested: %s", case.number, ", ".join(made))
    await send_pending(db, link, now=now, actor=actor, case_id=case_id)
    return made


async def _expired_unanswered(session: AsyncSession, command_id: str, now: datetime) -> bool:
    command = await session.get(CommandRecord, command_id)
    if command is None or command.expires_at >= now:
        return False
    answered = await session.scalar(
        select(CommandAckRecord.id).where(CommandAckRecord.command_id == command_id).limit(1)
    )
    return answered is None


async def _due(session: AsyncSession, now: datetime, case_id: int | None) -> list[int]:
    query = (
        select(RetrievalRow)
        .join(CaseRow, CaseRow.id == RetrievalRow.case_id)
        .where(
            CaseRow.status.in_(FETCHING),
            RetrievalRow.status.in_(("requested", "uploading")),
            RetrievalRow.source == "upload",
        )
        .order_by(RetrievalRow.id)
    )
    if case_id is not None:
        query = query.where(RetrievalRow.case_id == case_id)
    due = []
    for row in (await session.execute(query)).scalars():
        if row.command_id is None or (
            row.status == "requested" and await _expired_unanswered(session, row.command_id, now)
        ):
            due.append(row.id)
    return due


async def send_pending(
    db: Database,
    link: ControllerLink | None,
    *,
    now: datetime,
    actor: str,
    case_id: int | None = None,
) -> int:
    """Send every upload command that is due; the number sent. Stops at the first the
    broker refuses: the job tries again."""
    if link is None or link.signer is None:
        return 0
    async with db.session() as session:
        due = await _due(session, now, case_id)
    sent = 0
    for retrieval_id in due:
        try:
            if await _send_one(db, link, retrieval_id, now=now, actor=actor):
                sent += 1
        except (LinkError, ConfigError) as exc:
            log.warning("upload commands not sent now, will retry: %s", exc)
            break
    return sent


async def _send_one(
    db: Database, link: ControllerLink, retrieval_id: int, *, now: datetime, actor: str
) -> bool:
    async with db.session() as session:
        row = await session.get(RetrievalRow, retrieval_id, with_for_update=True)
        if row is None:
            return False
        case = await session.get(CaseRow, row.case_id)
        if case is None or case.status not in FETCHING:
            return False
        spans = (
            await session.execute(
                select(CaseRangeRow.start, CaseRangeRow.end)
                .where(CaseRangeRow.case_id == case.id, CaseRangeRow.unit_id == row.unit_id)
                .order_by(CaseRangeRow.start)
            )
        ).all()
        ranges = [TimeRange(start=start, end=end) for start, end in spans]
        if not ranges:
            return False
        action = UploadEvidence(upload_id=row.upload_id, case_number=case.number, ranges=ranges)
        command = await send_command(
            link, session, row.unit_id, action, actor=actor, ttl=COMMAND_TTL
        )
        again = row.command_id is not None
        row.command_id = command.body.command_id
        await audit.record(
            session,
            actor=actor,
            action="evidence.upload_command_resent" if again else "evidence.upload_command_sent",
            subject=case_subject(case.number),
            details={
                "upload_id": row.upload_id,
                "unit_id": row.unit_id,
                "command_id": command.body.command_id,
                "ranges": [[r.start.isoformat(), r.end.isoformat()] for r in ranges],
            },
            at=now,
        )
        await session.commit()
    log.info("case=%s upload=%s unit=%s command sent", case.number, row.upload_id, row.unit_id)
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
    """Apply a unit's refusal or failure of an upload command, in the caller's
    transaction. False when it concerns no retrieval or changes nothing."""
    if status not in ("rejected", "failed"):
        return False
    row = await session.scalar(
        select(RetrievalRow).where(
            RetrievalRow.unit_id == unit_id, RetrievalRow.command_id == command_id
        )
    )
    if row is None or row.status != "requested":
        return False
    case = await session.get(CaseRow, row.case_id)
    if case is None:  # pragma: no cover - the foreign key keeps it
        return False
    row.status = "failed"
    row.finished_at = at
    row.problem = f"the unit {'refused' if status == 'rejected' else 'could not do'} it: " + (
        reason or "no reason given"
    )
    await audit.record(
        session,
        actor=f"unit:{unit_id}",
        action="evidence.retrieval_failed",
        subject=case_subject(case.number),
        details={"upload_id": row.upload_id, "command_id": command_id, "reason": reason},
        at=at,
    )
    log.warning("case=%s upload=%s unit=%s: %s", case.number, row.upload_id, unit_id, row.problem)
    return True


async def apply_stored_acks(session: AsyncSession) -> int:
    """Apply stored answers to upload commands not applied yet; the number applied."""
    rows = (
        await session.execute(
            select(CommandAckRecord)
            .join(RetrievalRow, RetrievalRow.command_id == CommandAckRecord.command_id)
            .where(
                RetrievalRow.status == "requested",
                CommandAckRecord.status.in_(("rejected", "failed")),
            )
            .order_by(CommandAckRecord.received_at, CommandAckRecord.id)
        )
    ).scalars()
    applied = 0
    for ack in list(rows):
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


async def retrieval_job(db: Database, link: ControllerLink | None, now: datetime) -> int:
    """One periodic pass: apply stored answers, send what is due. Returns commands sent."""
    async with db.session() as session:
        if await apply_stored_acks(session):
            await session.commit()
    return await send_pending(db, link, now=now, actor="system")
