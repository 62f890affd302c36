"""What the API and the unit page show of a unit's recording index as the controller holds
it: its checkpoints by status, the verified head, the flagged reports, and the segments."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from controller.fleet.index_checkpoints import FLAGGED, STATUS_WORDS
from controller.store.reports import CheckpointRecord, SegmentRecord

__all__ = ["CheckpointView", "IndexSummary", "SegmentView", "index_summary", "segments"]


class _View(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CheckpointView(_View):
    id: int
    count: int
    head: str
    signed_at: datetime
    received_at: datetime
    status: str
    status_words: str
    problems: list[str]


class IndexSummary(_View):
    checkpoints: dict[str, int]
    """How many reports had each status."""
    verified_head: CheckpointView | None
    """The latest verified checkpoint: the chain head the controller vouches for."""
    flagged: list[CheckpointView]
    """The latest reports that failed their check, newest first."""
    has_signing_key: bool


class SegmentView(_View):
    segment_id: str
    chain_seq: int | None
    started_at: datetime
    ended_at: datetime
    size: int
    sha256: str
    chain_hash: str
    truncated: bool
    checkpoint_status: str
    """The status of the report that brought it ("unsigned" without a checkpoint)."""


def _view(row: CheckpointRecord) -> CheckpointView:
    return CheckpointView(
        id=row.id,
        count=row.count,
        head=row.head,
        signed_at=row.signed_at,
        received_at=row.received_at,
        status=row.status,
        status_words=STATUS_WORDS.get(row.status, row.status),
        problems=row.problems,
    )


async def index_summary(
    session: AsyncSession, unit_id: str, *, has_signing_key: bool, flagged: int = 10
) -> IndexSummary:
    counts = dict(
        (str(status), int(n))
        for status, n in (
            await session.execute(
                select(CheckpointRecord.status, func.count())
                .where(CheckpointRecord.unit_id == unit_id)
                .group_by(CheckpointRecord.status)
            )
        ).all()
    )
    head = await session.scalar(
        select(CheckpointRecord)
        .where(CheckpointRecord.unit_id == unit_id, CheckpointRecord.status == "verified")
        .order_by(CheckpointRecord.count.desc(), CheckpointRecord.id.desc())
        .limit(1)
    )
    bad = (
        await session.execute(
            select(CheckpointRecord)
            .where(CheckpointRecord.unit_id == unit_id, CheckpointRecord.status.in_(FLAGGED))
            .order_by(CheckpointRecord.received_at.desc(), CheckpointRecord.id.desc())
            .limit(flagged)
        )
    ).scalars()
    return IndexSummary(
        checkpoints=counts,
        verified_head=_view(head) if head is not None else None,
        flagged=[_view(r) for r in bad],
        has_signing_key=has_signing_key,
    )


async def segments(session: AsyncSession, unit_id: str, *, limit: int = 500) -> list[SegmentView]:
    """The unit's latest reported segments, newest first, with their report's status."""
    rows = await session.execute(
        select(SegmentRecord, CheckpointRecord.status)
        .outerjoin(CheckpointRecord, CheckpointRecord.id == SegmentRecord.checkpoint_id)
        .where(SegmentRecord.unit_id == unit_id)
        .order_by(SegmentRecord.started_at.desc(), SegmentRecord.id.desc())
        .limit(limit)
    )
    return [
        SegmentView(
            segment_id=s.segment_id,
            chain_seq=s.chain_seq,
            started_at=s.started_at,
            ended_at=s.ended_at,
            size=s.size,
            sha256=s.sha256,
            chain_hash=s.chain_hash,
            truncated=s.truncated,
            checkpoint_status=status or "unsigned",
        )
        for s, status in rows.all()
    ]
