"""Per-unit sequence numbers: what is new, what is late, what is a duplicate.

`seq` is per unit and monotonic across restarts: a seq at or below the highest seen is a
duplicate (a QoS 1 redelivery) and dropped, unless it falls in a recorded gap, which it
then fills (an outbox replay after a reconnect arrives after the newer online state). A
jump records the missing range as a gap. The one seq a unit reserves for its last will
at each connection (the seq just before its online state) is kept as a gap of reason
"will", not counted as loss, and filled if the will fires. A small seq from a new boot
far below the highest means the unit's seq store was reset: counting starts again.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from controller.metrics import ControllerMetrics
from controller.store.base import utcnow
from controller.store.fleet import SeqGap, UnitStatus
from protocol.messages import Message, UnitState

__all__ = ["SEQ_RESET_MAX", "sequence"]

log = logging.getLogger(__name__)

#: A seq at or below this from a boot id not seen before, far below the highest seq,
#: means the unit's seq store was reset (a reinstalled unit): start again from it.
SEQ_RESET_MAX = 16


async def sequence(
    session: AsyncSession,
    metrics: ControllerMetrics,
    status: UnitStatus,
    gaps: list[SeqGap],
    message: Message,
) -> bool | None:
    """True: newest message; False: a late one filling a gap; None: a duplicate.
    `gaps` are the unit's recorded gaps, kept up to date."""
    seq = message.seq
    last = status.last_seq
    if last is None or seq > last:
        if last is not None and seq > last + 1:
            _record_gap(session, metrics, status, gaps, last + 1, seq - 1, message)
        elif last is None and seq > 0 and isinstance(message, UnitState) and message.online:
            # First contact: still keep the seq reserved for this connection's will.
            _record_gap(session, metrics, status, gaps, seq - 1, seq - 1, message)
        status.last_seq = seq
        return True
    for gap in gaps:
        if gap.first_seq <= seq <= gap.last_seq:
            await _fill(session, gaps, gap, seq)
            if gap.reason == "missing":
                status.missing = max(0, status.missing - 1)
                metrics.late.inc()
            return False
    if seq <= SEQ_RESET_MAX < last - seq and message.boot_id != status.boot_id:
        log.warning(
            "unit=%s seq reset from %s to %s (new boot %s)",
            status.unit_id,
            last,
            seq,
            message.boot_id,
        )
        for gap in list(gaps):
            await _drop(session, gaps, gap)
        session.info.setdefault("seq_resets", []).append(status.unit_id)
        status.last_seq = seq
        return True
    return None


def _record_gap(
    session: AsyncSession,
    metrics: ControllerMetrics,
    status: UnitStatus,
    gaps: list[SeqGap],
    first: int,
    last: int,
    message: Message,
) -> None:
    now = utcnow()
    if isinstance(message, UnitState) and message.online:
        # The seq just before a unit's online state is reserved for its will.
        ranges = [(first, last - 1, "missing"), (last, last, "will")]
    else:
        ranges = [(first, last, "missing")]
    for a, b, reason in ranges:
        if a > b:
            continue
        gap = SeqGap(
            unit_id=status.unit_id, first_seq=a, last_seq=b, reason=reason, detected_at=now
        )
        session.add(gap)
        gaps.append(gap)
        if reason == "missing":
            status.missing += b - a + 1
            metrics.gaps.inc(b - a + 1)


async def _drop(session: AsyncSession, gaps: list[SeqGap], gap: SeqGap) -> None:
    gaps.remove(gap)
    if gap in session.new:
        session.expunge(gap)
    else:
        await session.delete(gap)


async def _fill(session: AsyncSession, gaps: list[SeqGap], gap: SeqGap, seq: int) -> None:
    await _drop(session, gaps, gap)
    pieces = [(gap.first_seq, seq - 1), (seq + 1, gap.last_seq)]
    for a, b in pieces:
        if a <= b:
            piece = SeqGap(
                unit_id=gap.unit_id,
                first_seq=a,
                last_seq=b,
                reason=gap.reason,
                detected_at=gap.detected_at,
            )
            session.add(piece)
            gaps.append(piece)
