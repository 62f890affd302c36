"""The controller's copy of each unit's recording index, checked as it arrives.

Each `recording_index` report carries the segments the unit sealed, the entries its index
chain gained since its previous report and the unit's Ed25519-signed checkpoint of the
chain's head (`protocol.segment.manifest`). The controller keeps every report's checkpoint
and segment summaries, and the chain entries of every report that checks out, so evidence
retrieval can later hold uploaded footage and manifests against a chain the unit can no
longer rewrite. A report is checked for:

- its signature, with the unit's signing public key from the inventory;
- its entries: each hash matches its content and links to the one before, the last is
  the signed head, and every segment summary is one of them;
- continuity: every entry the controller already holds at the same position is the same,
  the first links to the entry before it and the last to the entry after it, where held.

Its checkpoint's status says what was found: "verified"; "gap" (good, but the entries
before it never arrived: a lost or late report; turned "verified" when a late report
fills the gap); "no_key" (no signing key on record: nothing to check the signature with);
"bad_signature" or "broken_chain" (kept with its claimed entries and the problems, audited,
and raised as the controller fault `index_check_failed`). A redelivered report (same
content) is stored once.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from controller import audit
from controller.fleet.unit_keys import public_key
from controller.store.fleet import Unit
from controller.store.reports import ChainEntryRecord, CheckpointRecord, SegmentRecord
from protocol.faults import FaultCode
from protocol.messages import RecordingIndex, SegmentSummary
from protocol.segment.format import canonical_json, iso_utc
from protocol.segment.manifest import ChainEntry, Checkpoint, check_chain, key_id

if TYPE_CHECKING:
    from controller.callouts import CalloutBatch, CalloutService

__all__ = ["FLAGGED", "STATUS_WORDS", "IndexCheck", "check_report", "record_index"]

log = logging.getLogger(__name__)

#: Checkpoint states that raise the `index_check_failed` fault.
FLAGGED = ("bad_signature", "broken_chain")
#: Each checkpoint status in words.
STATUS_WORDS = {
    "verified": "verified",
    "gap": "verified, but earlier reports never arrived",
    "no_key": "not checked: no signing key on record for the unit",
    "bad_signature": "the unit's signature on its recording index does not verify",
    "broken_chain": "the unit's recording index does not continue the record the control "
    "room holds",
}
#: How many later reports one late report may turn from "gap" to "verified" at once.
_HEAL_LIMIT = 1000


@dataclass
class IndexCheck:
    """What checking one report found."""

    signature_ok: bool | None  # None: no key to check it with
    problems: list[str] = field(default_factory=list)
    gap: bool = False

    @property
    def status(self) -> str:
        if self.signature_ok is False:
            return "bad_signature"
        if self.problems:
            return "broken_chain"
        if self.signature_ok is None:
            return "no_key"
        return "gap" if self.gap else "verified"


def _report_digest(message: RecordingIndex) -> str:
    doc = message.model_dump(mode="json", include={"segments", "entries", "checkpoint"})
    return hashlib.sha256(canonical_json(doc)).hexdigest()


def _summary_problem(summary: SegmentSummary, entries: dict[str, ChainEntry]) -> str | None:
    entry = entries.get(summary.chain_hash)
    body = entry.body if entry is not None else {}
    if entry is None or body.get("kind") != "segment":
        return f"segment {summary.segment_id} is not among the report's chain entries"
    stated = {
        "segment_id": summary.segment_id,
        "started_at": iso_utc(summary.started_at),
        "ended_at": iso_utc(summary.ended_at),
        "size": summary.size,
        "sha256": summary.sha256,
        "truncated": summary.truncated,
    }
    differ = sorted(k for k, v in stated.items() if body.get(k) != v)
    if differ:
        return f"segment {summary.segment_id}: summary and chain entry differ in {differ}"
    return None


def check_report(
    unit_id: str,
    signing_key: str | None,
    checkpoint: Checkpoint,
    entries: list[ChainEntry],
    segments: list[SegmentSummary],
    held: dict[int, ChainEntryRecord],
) -> IndexCheck:
    """Check one report against the unit's key and `held`, the stored chain entries at the
    positions around and within the report's entries (see the module docstring)."""
    signature_ok: bool | None = None
    if signing_key is not None:
        key = public_key(signing_key)
        signature_ok = checkpoint.key_id == key_id(key) and checkpoint.verify(key)
    found = IndexCheck(signature_ok)
    problems = found.problems
    if signature_ok is False:
        problems.append("checkpoint signature does not verify with the unit's signing key")
    if checkpoint.unit_id != unit_id:
        problems.append(f"checkpoint is for unit {checkpoint.unit_id!r}")
    problems += check_chain(entries, unit_id=unit_id)
    last = entries[-1] if entries else None
    if last is not None and (last.seq, last.chain_hash) != (checkpoint.count, checkpoint.head):
        problems.append(
            f"entries end at entry {last.seq}, not at the signed head (entry {checkpoint.count})"
        )
    by_hash = {e.chain_hash: e for e in entries}
    problems += [p for s in segments if (p := _summary_problem(s, by_hash)) is not None]
    for entry in entries:
        mine = held.get(entry.seq)
        if mine is not None and mine.chain_hash != entry.chain_hash:
            problems.append(
                f"{entry.label} differs from the entry the controller holds at that position "
                "(the unit's history was rewritten)"
            )
    if last is None:  # a checkpoint of a head the controller may already hold
        mine = held.get(checkpoint.count)
        if mine is not None and mine.chain_hash != checkpoint.head:
            problems.append(
                f"signed head of entry {checkpoint.count} differs from the controller's"
            )
        found.gap = checkpoint.count > 0 and mine is None
        return found
    first = entries[0]
    before, after = held.get(first.seq - 1), held.get(last.seq + 1)
    if before is not None and before.chain_hash != first.prev_hash:
        problems.append(f"{first.label} does not continue the chain the controller holds")
    if after is not None and after.prev_hash != last.chain_hash:
        problems.append(f"{last.label} does not lead into the chain the controller holds")
    found.gap = first.seq > 1 and before is None
    return found


async def _held(
    session: AsyncSession, unit_id: str, first: int, last: int
) -> dict[int, ChainEntryRecord]:
    rows = await session.execute(
        select(ChainEntryRecord).where(
            ChainEntryRecord.unit_id == unit_id,
            ChainEntryRecord.seq >= first,
            ChainEntryRecord.seq <= last,
        )
    )
    return {r.seq: r for r in rows.scalars()}


async def record_index(
    session: AsyncSession,
    callouts: CalloutService,
    message: RecordingIndex,
    received_at: datetime,
    *,
    batch: CalloutBatch | None = None,
) -> CheckpointRecord | None:
    """Check and store one report (in the caller's transaction, whose callout changes
    are `batch`). Returns its checkpoint row, or None for a report without a checkpoint
    or one already stored."""
    unit_id, checkpoint = message.unit_id, message.checkpoint
    if checkpoint is None:
        await _store_segments(session, message, None, {}, received_at)
        return None
    digest = _report_digest(message)
    known = await session.scalar(
        select(CheckpointRecord.id).where(
            CheckpointRecord.unit_id == unit_id, CheckpointRecord.digest == digest
        )
    )
    if known is not None:
        return None
    unit = await session.get(Unit, unit_id)
    entries = message.entries
    low = (entries[0].seq - 1) if entries else checkpoint.count
    high = (entries[-1].seq + 1) if entries else checkpoint.count
    held = await _held(session, unit_id, low, high)
    found = check_report(
        unit_id,
        unit.signing_public_key if unit is not None else None,
        checkpoint,
        entries,
        message.segments,
        held,
    )
    status = found.status
    record = CheckpointRecord(
        unit_id=unit_id,
        digest=digest,
        count=checkpoint.count,
        head=checkpoint.head,
        signed_at=checkpoint.signed_at,
        key_id=checkpoint.key_id,
        signature=checkpoint.signature,
        status=status,
        problems=found.problems[:50],
        claimed=[] if status in ("verified", "gap") else [e.model_dump() for e in entries],
        message_seq=message.seq,
        received_at=received_at,
    )
    session.add(record)
    await session.flush()
    seqs: dict[str, int] = {}
    if status in ("verified", "gap"):
        for entry in entries:
            seqs[entry.chain_hash] = entry.seq
            if entry.seq not in held:
                session.add(_entry_row(unit_id, entry, record.id, received_at))
        if status == "verified" and entries:
            await _heal(session, unit_id, entries[-1])
    await _store_segments(session, message, record.id, seqs, received_at)
    if status in FLAGGED:
        await _raise(session, callouts, unit, record, received_at, batch)
    elif status == "gap":
        log.info("unit=%s index report from entry %s: earlier entries missing", unit_id, low + 1)
    return record


def _entry_row(
    unit_id: str, entry: ChainEntry, checkpoint_id: int, at: datetime
) -> ChainEntryRecord:
    return ChainEntryRecord(
        unit_id=unit_id,
        seq=entry.seq,
        prev_hash=entry.prev_hash,
        chain_hash=entry.chain_hash,
        kind=str(entry.body.get("kind", ""))[:10],
        segment_id=str(entry.body.get("segment_id", ""))[:128],
        body=entry.body,
        checkpoint_id=checkpoint_id,
        received_at=at,
    )


async def _heal(session: AsyncSession, unit_id: str, last: ChainEntry) -> None:
    """Reports after a gap this one filled now continue a verified chain."""
    link, seq = last.chain_hash, last.seq
    for _ in range(_HEAL_LIMIT):
        after = await session.scalar(
            select(ChainEntryRecord).where(
                ChainEntryRecord.unit_id == unit_id, ChainEntryRecord.seq == seq + 1
            )
        )
        if after is None or after.prev_hash != link:
            return
        later = await session.get(CheckpointRecord, after.checkpoint_id)
        if later is None or later.status != "gap":
            return
        later.status = "verified"
        link, seq = later.head, later.count


async def _store_segments(
    session: AsyncSession,
    message: RecordingIndex,
    checkpoint_id: int | None,
    seqs: dict[str, int],
    at: datetime,
) -> None:
    for summary in message.segments:
        exists = await session.scalar(
            select(SegmentRecord.id).where(
                SegmentRecord.unit_id == message.unit_id,
                SegmentRecord.segment_id == summary.segment_id,
                SegmentRecord.chain_hash == summary.chain_hash,
            )
        )
        if exists is not None:
            continue
        session.add(
            SegmentRecord(
                unit_id=message.unit_id,
                segment_id=summary.segment_id,
                chain_seq=seqs.get(summary.chain_hash),
                started_at=summary.started_at,
                ended_at=summary.ended_at,
                size=summary.size,
                sha256=summary.sha256,
                chain_hash=summary.chain_hash,
                truncated=summary.truncated,
                deleted=summary.deleted,
                checkpoint_id=checkpoint_id,
                received_at=at,
            )
        )


async def _raise(
    session: AsyncSession,
    callouts: CalloutService,
    unit: Unit | None,
    record: CheckpointRecord,
    at: datetime,
    batch: CalloutBatch | None,
) -> None:
    log.warning(
        "unit=%s index checkpoint flagged status=%s count=%d: %s",
        record.unit_id,
        record.status,
        record.count,
        "; ".join(record.problems)[:300],
    )
    await audit.record(
        session,
        actor="system",
        action="index.checkpoint_flagged",
        subject=f"unit:{record.unit_id}",
        details={
            "checkpoint_id": record.id,
            "status": record.status,
            "count": record.count,
            "head": record.head,
            "problems": record.problems,
        },
        at=at,
    )
    if unit is None:
        return
    # The callout (which the contractor sees) says what failed in words; the problems
    # themselves are in the audit entry and on the checkpoint, for the control room.
    await callouts.faults.fault_raised(
        session,
        unit,
        FaultCode.INDEX_CHECK_FAILED,
        at=at,
        check="recording_index",
        detail=f"{STATUS_WORDS[record.status]} (report of chain entry {record.count})",
        facts={"checkpoint_id": record.id, "status": record.status, "count": record.count},
        origin="controller",
        batch=batch,
    )
