"""Per-unit sequence numbers: what is new, what is late, a duplicate, or not plausible.

`seq` is per unit and monotonic across restarts. For each message, against the unit's
highest stored seq (`last`):

- **newest**: `last < seq <= last + window`. A jump past `last + 1` records the seqs in
  between as a gap of reason "missing" (counted in the unit's `missing` and the
  `cctv_ingest_missing_seqs` metric). Only a newest message may change the live state.
- **late**: `seq <= last` inside a recorded gap: stored and the gap filled (an outbox
  replay after a reconnect arrives after the newer online state), but it never rolls
  the live state back.
- **duplicate**: `seq <= last` outside every gap (a QoS 1 redelivery): dropped.
- **ahead**: `seq > last + window`, further ahead than the unit could have counted since
  the controller last heard it: quarantined (reason "seq_ahead"), not stored, not
  applied, no gap recorded, `last` unchanged. So one corrupt or forged seq (say 10^15)
  cannot make every later real message look like a duplicate and freeze the unit's
  live state. `window = SEQ_AHEAD_SLACK + SEQ_RATE_MAX * seconds since last heard`:
  a seq jumps only over messages the unit lost or dropped, never over its own rate of
  counting, and a unit counts far slower than SEQ_RATE_MAX.
- **re-baseline**: when the unit's counter really did jump, its messages keep arriving
  beyond the window. A second message from the same boot that continues from the one
  refused (`refused < seq <= refused + SEQ_AHEAD_SLACK`) is taken as the new newest
  without recording a gap (those seqs were never sent). Likewise a small seq
  (<= SEQ_RESET_MAX) from a boot id not seen before, far below `last`, means the unit's
  seq store was reset (a reinstalled unit): counting starts again from it.

The seq a unit reserves for its last will at each connection (the seq just before its
online state) is kept as a gap of reason "will", not counted as loss, and filled if the
will fires. The gap metric and the `missing` count therefore only ever count seqs
between two messages that were stored.
"""

from __future__ import annotations

import logging
from datetime import datetime
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from controller.metrics import ControllerMetrics
from controller.store.base import utcnow
from controller.store.fleet import SeqGap
from controller.store.live_status import LiveStatus
from protocol.messages import Message, UnitState

__all__ = ["SEQ_AHEAD_SLACK", "SEQ_RATE_MAX", "SEQ_RESET_MAX", "Sequencer", "Verdict"]

log = logging.getLogger(__name__)

#: A seq at or below this from a boot id not seen before, far below the highest seq,
#: means the unit's seq store was reset (a reinstalled unit): start again from it.
SEQ_RESET_MAX = 16
#: Seqs a unit may jump at any moment (messages lost or dropped from its outbox).
SEQ_AHEAD_SLACK = 1_000_000
#: Seqs per second of silence a unit may jump on top of the slack (units send a few a
#: minute; the load simulator counts in milliseconds, i.e. 1,000 a second).
SEQ_RATE_MAX = 1_000


class Verdict(StrEnum):
    NEWEST = "newest"
    LATE = "late"
    DUPLICATE = "duplicate"
    AHEAD = "ahead"


class Sequencer:
    """The sequence rules above for one ingest. Remembers, per unit, the last seq it
    refused as too far ahead (in memory: a restart only delays a re-baseline)."""

    def __init__(self, metrics: ControllerMetrics) -> None:
        self.metrics = metrics
        self._refused: dict[str, tuple[str, int]] = {}

    def window(self, status: LiveStatus, now: datetime) -> int:
        """How far past the highest seq a unit may be now."""
        heard = status.last_seen_at
        quiet = 0.0 if heard is None else max(0.0, (now - heard).total_seconds())
        return SEQ_AHEAD_SLACK + int(quiet * SEQ_RATE_MAX)

    async def sequence(
        self,
        session: AsyncSession,
        status: LiveStatus,
        gaps: list[SeqGap],
        message: Message,
        now: datetime,
    ) -> Verdict:
        """The verdict for `message`; `status.last_seq` and the unit's recorded `gaps`
        (kept up to date in `gaps`) are updated for newest and late messages."""
        seq = message.seq
        last = status.last_seq
        if last is None or seq > last:
            # (The window is at least the slack: only then is it worth working out.)
            if (
                last is not None
                and seq > last + SEQ_AHEAD_SLACK
                and seq > last + self.window(status, now)
            ):
                return await self._ahead(session, status, gaps, message, last)
            self._refused.pop(status.unit_id, None)
            if last is not None and seq > last + 1:
                _record_gap(session, self.metrics, status, gaps, last + 1, seq - 1, message)
            elif last is None and seq > 0 and isinstance(message, UnitState) and message.online:
                # First contact: still keep the seq reserved for this connection's will.
                _record_gap(session, self.metrics, status, gaps, seq - 1, seq - 1, message)
            status.last_seq = seq
            return Verdict.NEWEST
        for gap in gaps:
            if gap.first_seq <= seq <= gap.last_seq:
                await _fill(session, gaps, gap, seq)
                if gap.reason == "missing":
                    status.missing = max(0, status.missing - 1)
                    self.metrics.late.inc()
                return Verdict.LATE
        if seq <= SEQ_RESET_MAX < last - seq and message.boot_id != status.boot_id:
            log.warning(
                "unit=%s seq reset from %s to %s (new boot %s)",
                status.unit_id,
                last,
                seq,
                message.boot_id,
            )
            await _rebaseline(session, status, gaps, seq)
            return Verdict.NEWEST
        return Verdict.DUPLICATE

    async def _ahead(
        self,
        session: AsyncSession,
        status: LiveStatus,
        gaps: list[SeqGap],
        message: Message,
        last: int,
    ) -> Verdict:
        refused = self._refused.get(status.unit_id)
        seq = message.seq
        if (
            refused is not None
            and refused[0] == message.boot_id
            and refused[1] < seq <= refused[1] + SEQ_AHEAD_SLACK
        ):
            log.warning(
                "unit=%s seq jumped from %s to %s and carries on from there: counting "
                "starts again at %s",
                status.unit_id,
                last,
                refused[1],
                seq,
            )
            del self._refused[status.unit_id]
            await _rebaseline(session, status, gaps, seq)
            return Verdict.NEWEST
        self._refused[status.unit_id] = (message.boot_id, seq)
        return Verdict.AHEAD


async def _rebaseline(
    session: AsyncSession, status: LiveStatus, gaps: list[SeqGap], seq: int
) -> None:
    for gap in list(gaps):
        await _drop(session, gaps, gap)
    status.last_seq = seq


def _record_gap(
    session: AsyncSession,
    metrics: ControllerMetrics,
    status: LiveStatus,
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
