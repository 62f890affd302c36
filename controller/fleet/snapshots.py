"""Reference pictures: one still picture of a unit's camera view, asked for by a person, for
privacy masks to be drawn on and checked against.

    asked = await request_reference(db, link, "cam-02", actor="operator1")   # signed command
    await record_reference(session, message, received_at)                  # ingest: the picture
    shown = await open_reference(db, "cam-02", sha256=None, actor="operator1")   # latest + bytes

The picture is the camera's own view BEFORE privacy masks (masks are drawn on it), so it is
kept and shown like footage: only the control room sees it (the pages and the JSON API guard
it with `Permission.VIEW_REFERENCE_FRAME`), and every request, every picture received and
every view of one is written to the audit log. A picture is kept only when a person asked
for it: one that answers no request of this controller is dropped and logged.

The request is stored (and committed) before the command is published, so the picture
cannot arrive before the request it answers.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import undefer

from controller import audit
from controller.errors import ControllerError, LinkError
from controller.fleet.commands import send_command
from controller.link import ControllerLink
from controller.store.base import Database, utcnow
from controller.store.reports import CommandAckRecord
from controller.store.snapshots import ReferenceSnapshotRecord
from protocol.messages import ReferenceSnapshot, ReferenceSnapshotRequest

__all__ = [
    "BEFORE_MASKS",
    "REQUEST_TTL",
    "ReferencePicture",
    "ReferenceView",
    "UnknownReference",
    "latest_reference",
    "open_reference",
    "record_reference",
    "reference_by_sha256",
    "reference_requests",
    "request_reference",
]

log = logging.getLogger(__name__)

#: How long a unit may take to act on a request (it refuses the command after that).
REQUEST_TTL = timedelta(minutes=2)
#: What the audit log says of every picture: what it shows.
BEFORE_MASKS = "the camera's own view, before privacy masks"


class UnknownReference(ControllerError):
    """No picture with this SHA-256 from this unit is held by the control room."""

    status = 404

    def __init__(self, unit_id: str, sha256: str | None) -> None:
        if sha256 is None:
            super().__init__(f"the control room holds no picture from {unit_id} yet")
        else:
            super().__init__(
                f"the control room holds no picture from {unit_id} with SHA-256 {sha256[:64]}"
            )
        self.unit_id = unit_id
        self.sha256 = sha256


@dataclass(frozen=True, slots=True)
class ReferenceView:
    """A request for a reference picture and, once received, the picture's facts (no
    bytes). `failure` is the unit's reason when it could not send one."""

    unit_id: str
    request_id: str
    requested_by: str
    requested_at: datetime
    expires_at: datetime
    sha256: str | None
    captured_at: datetime | None
    received_at: datetime | None
    width: int | None
    height: int | None
    size: int | None
    failure: str | None = None

    @property
    def received(self) -> bool:
        return self.sha256 is not None

    def state(self, now: datetime) -> str:
        """received, failed (the unit said why), expired (no answer in time) or waiting."""
        if self.sha256 is not None:
            return "received"
        if self.failure is not None:
            return "failed"
        return "expired" if now > self.expires_at else "waiting"


@dataclass(frozen=True, slots=True)
class ReferencePicture:
    """A picture with its facts, as opened by a person (the view is audited)."""

    view: ReferenceView
    jpeg: bytes


def _view(row: ReferenceSnapshotRecord, failure: str | None = None) -> ReferenceView:
    return ReferenceView(
        unit_id=row.unit_id,
        request_id=row.request_id,
        requested_by=row.requested_by,
        requested_at=row.requested_at,
        expires_at=row.expires_at,
        sha256=row.sha256,
        captured_at=row.captured_at,
        received_at=row.received_at,
        width=row.width,
        height=row.height,
        size=row.size,
        failure=failure,
    )


# ------------------------------------------------------------------------ asking


async def request_reference(
    db: Database, link: ControllerLink | None, unit_id: str, *, actor: str
) -> ReferenceView:
    """Ask the unit for a picture (a signed command), record the request and audit it.
    Raises LinkError when the controller has no broker connection."""
    if link is None:
        raise LinkError("the controller has no broker connection; try again shortly")
    now = utcnow()
    request_id = uuid.uuid4().hex
    row = ReferenceSnapshotRecord(
        unit_id=unit_id,
        request_id=request_id,
        command_id="",
        requested_by=actor[:200],
        requested_at=now,
        expires_at=now + REQUEST_TTL,
    )
    async with db.session() as session:
        session.add(row)
        await session.commit()
    try:
        async with db.session() as session:
            action = ReferenceSnapshotRequest(request_id=request_id)
            command = await send_command(
                link, session, unit_id, action, actor=actor, ttl=REQUEST_TTL
            )
            stored = await session.get(ReferenceSnapshotRecord, row.id)
            assert stored is not None
            stored.command_id = command.body.command_id
            stored.expires_at = command.body.expires_at
            await session.commit()
            view = _view(stored)
    except LinkError:
        async with db.session() as session:
            await session.execute(
                delete(ReferenceSnapshotRecord).where(ReferenceSnapshotRecord.id == row.id)
            )
            await session.commit()
        raise
    log.info("unit=%s reference picture requested=%s by=%s", unit_id, request_id, actor)
    return view


# ----------------------------------------------------------------------- receiving


async def record_reference(
    session: AsyncSession, message: ReferenceSnapshot, received_at: datetime
) -> bool:
    """Keep the picture with the request it answers (in the caller's transaction) and
    audit it; False when it answers no request of the unit's, or was kept already."""
    row = await session.scalar(
        select(ReferenceSnapshotRecord).where(
            ReferenceSnapshotRecord.request_id == message.request_id,
            ReferenceSnapshotRecord.unit_id == message.unit_id,
        )
    )
    if row is None:
        log.warning(
            "unit=%s reference picture for request=%s that was never made: dropped",
            message.unit_id,
            message.request_id,
        )
        return False
    if row.sha256 is not None:
        return False
    jpeg = message.image()
    row.sha256 = message.sha256
    row.captured_at = message.captured_at
    row.received_at = received_at
    row.width, row.height, row.size = message.width, message.height, len(jpeg)
    row.message_seq = message.seq
    row.jpeg = jpeg
    await audit.record(
        session,
        actor="system",
        action="snapshot.received",
        subject=f"unit:{message.unit_id}",
        details={
            "request_id": message.request_id,
            "requested_by": row.requested_by,
            "sha256": message.sha256,
            "captured_at": message.captured_at.isoformat(),
            "bytes": len(jpeg),
            "shows": BEFORE_MASKS,
        },
        at=received_at,
    )
    log.info("unit=%s reference picture received sha256=%s", message.unit_id, message.sha256)
    return True


# ------------------------------------------------------------------------- reading


async def latest_reference(session: AsyncSession, unit_id: str) -> ReferenceView | None:
    """The newest picture received from the unit (facts only), or None."""
    row = await session.scalar(
        select(ReferenceSnapshotRecord)
        .where(
            ReferenceSnapshotRecord.unit_id == unit_id,
            ReferenceSnapshotRecord.sha256.is_not(None),
        )
        .order_by(ReferenceSnapshotRecord.received_at.desc(), ReferenceSnapshotRecord.id.desc())
        .limit(1)
    )
    return None if row is None else _view(row)


async def reference_by_sha256(
    session: AsyncSession, unit_id: str, sha256: str
) -> ReferenceView | None:
    """The picture of the unit with this SHA-256 (facts only), or None."""
    row = await session.scalar(
        select(ReferenceSnapshotRecord)
        .where(
            ReferenceSnapshotRecord.unit_id == unit_id,
            ReferenceSnapshotRecord.sha256 == sha256,
        )
        .order_by(ReferenceSnapshotRecord.id)
        .limit(1)
    )
    return None if row is None else _view(row)


async def reference_requests(
    session: AsyncSession, unit_id: str, *, limit: int = 10
) -> list[ReferenceView]:
    """The unit's latest requests, newest first, each with its picture's facts or the
    unit's reason for not sending one."""
    rows = list(
        (
            await session.execute(
                select(ReferenceSnapshotRecord)
                .where(ReferenceSnapshotRecord.unit_id == unit_id)
                .order_by(ReferenceSnapshotRecord.id.desc())
                .limit(limit)
            )
        ).scalars()
    )
    waiting = [r.command_id for r in rows if r.sha256 is None and r.command_id]
    failures: dict[str, str] = {}
    if waiting:
        acks = await session.execute(
            select(CommandAckRecord.command_id, CommandAckRecord.status, CommandAckRecord.reason)
            .where(
                CommandAckRecord.unit_id == unit_id,
                CommandAckRecord.command_id.in_(waiting),
                CommandAckRecord.status.in_(("failed", "rejected")),
            )
            .order_by(CommandAckRecord.id)
        )
        for command_id, status, reason in acks.all():
            failures[str(command_id)] = str(reason) or f"the unit {status} the request"
    return [_view(row, failures.get(row.command_id)) for row in rows]


async def open_reference(
    db: Database, unit_id: str, *, sha256: str | None, actor: str
) -> ReferencePicture:
    """The picture with this SHA-256 (None: the newest) and its bytes, for `actor` to see;
    the view is written to the audit log. Raises `UnknownReference`."""
    async with db.session() as session:
        query = select(ReferenceSnapshotRecord).options(undefer(ReferenceSnapshotRecord.jpeg))
        query = query.where(
            ReferenceSnapshotRecord.unit_id == unit_id,
            ReferenceSnapshotRecord.sha256.is_not(None),
        )
        if sha256 is None:
            query = query.order_by(
                ReferenceSnapshotRecord.received_at.desc(), ReferenceSnapshotRecord.id.desc()
            )
        else:
            query = query.where(ReferenceSnapshotRecord.sha256 == sha256).order_by(
                ReferenceSnapshotRecord.id
            )
        row = await session.scalar(query.limit(1))
        if row is None or row.jpeg is None:
            raise UnknownReference(unit_id, sha256)
        picture = ReferencePicture(_view(row), bytes(row.jpeg))
        await audit.record(
            session,
            actor=actor,
            action="snapshot.viewed",
            subject=f"unit:{unit_id}",
            details={
                "request_id": row.request_id,
                "sha256": row.sha256,
                "shows": BEFORE_MASKS,
            },
        )
        await session.commit()
    return picture
