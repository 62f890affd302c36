"""The checks every retrieved file passes before the controller keeps it as evidence, the
same for a file uploaded by the unit and one imported from its export folder.

The unit's signed index manifest (`protocol.segment.manifest`):
- it is for this unit, its checkpoint signature verifies with the unit's signing key the
  controller holds, its entries form one unbroken run of the hash chain ending at the
  signed head;
- it agrees with what the unit reported over MQTT at the time: every chain entry and
  every reported checkpoint head the controller holds at the same position is the same
  (a unit that rewrote its index after reporting it is caught here);
- it selects exactly the segment files offered, each inside the requested ranges.

Each segment file, once all its bytes are stored:
- it is a well-formed segment container recorded by this unit (its header, read without
  decrypting) and is the segment the manifest lists under its file name;
- its size and SHA-256 are the manifest's (a replaced or altered file is caught here) and
  what the unit reported over MQTT for that segment, where the controller holds a report.

A problem is a sentence naming the file; the caller refuses the file with it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from controller.fleet.unit_keys import public_key
from controller.store.reports import ChainEntryRecord, CheckpointRecord, SegmentRecord
from protocol.errors import SegmentError
from protocol.segment.manifest import (
    ManifestError,
    ManifestSegment,
    SegmentManifest,
    verify_manifest,
)
from protocol.segment.reader import inspect_segment

__all__ = [
    "ManifestCheck",
    "Range",
    "Reported",
    "check_manifest",
    "check_segment",
    "file_sha256",
    "load_reported",
    "reported_segments",
    "unit_signing_key",
]

Range = tuple[datetime, datetime]
#: Checkpoint states whose chain entries the controller holds as the unit's record.
TRUSTED = ("verified", "gap")
_READ = 1024 * 1024


@dataclass(frozen=True)
class Reported:
    """What the unit reported over MQTT about the part of its chain a manifest covers."""

    #: chain position -> (chain hash, when the controller received it)
    entries: dict[int, tuple[str, datetime]] = field(default_factory=dict)
    #: (count, head, received at) of every trusted checkpoint in that part
    checkpoints: list[tuple[int, str, datetime]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.entries and not self.checkpoints


@dataclass
class ManifestCheck:
    manifest: SegmentManifest | None
    problems: list[str]
    #: The selected segments by their file name (only when the manifest could be read).
    by_name: dict[str, ManifestSegment] = field(default_factory=dict)
    #: How many of the manifest's entries matched an entry reported over MQTT.
    matched_reported: int = 0


def file_sha256(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while block := f.read(_READ):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def unit_signing_key(raw_hex: str | None) -> Ed25519PublicKey | None:
    if raw_hex is None:
        return None
    try:
        return public_key(raw_hex)
    except ValueError:
        return None


async def load_reported(session: AsyncSession, unit_id: str, first: int, last: int) -> Reported:
    """The chain entries and checkpoints the unit reported for positions first..last."""
    rows = await session.execute(
        select(
            ChainEntryRecord.seq, ChainEntryRecord.chain_hash, ChainEntryRecord.received_at
        ).where(
            ChainEntryRecord.unit_id == unit_id,
            ChainEntryRecord.seq >= first,
            ChainEntryRecord.seq <= last,
        )
    )
    entries = {int(seq): (chain, at) for seq, chain, at in rows.all()}
    points = await session.execute(
        select(CheckpointRecord.count, CheckpointRecord.head, CheckpointRecord.received_at).where(
            CheckpointRecord.unit_id == unit_id,
            CheckpointRecord.status.in_(TRUSTED),
            CheckpointRecord.count >= first,
            CheckpointRecord.count <= last,
        )
    )
    return Reported(entries, [(int(c), h, at) for c, h, at in points.all()])


async def reported_segments(
    session: AsyncSession, unit_id: str, segment_ids: Iterable[str]
) -> dict[str, list[tuple[int, str, datetime]]]:
    """segment id -> every (size, sha256, received at) the unit reported for it (in
    reports whose checkpoint checked out, or that carried none)."""
    wanted = sorted(set(segment_ids))
    found: dict[str, list[tuple[int, str, datetime]]] = {}
    for start in range(0, len(wanted), 500):
        rows = await session.execute(
            select(
                SegmentRecord.segment_id,
                SegmentRecord.size,
                SegmentRecord.sha256,
                SegmentRecord.received_at,
            )
            .outerjoin(CheckpointRecord, CheckpointRecord.id == SegmentRecord.checkpoint_id)
            .where(
                SegmentRecord.unit_id == unit_id,
                SegmentRecord.segment_id.in_(wanted[start : start + 500]),
                or_(SegmentRecord.checkpoint_id.is_(None), CheckpointRecord.status.in_(TRUSTED)),
            )
        )
        for sid, size, sha, at in rows.all():
            found.setdefault(sid, []).append((int(size), sha, at))
    return found


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")


def _overlaps(seg: ManifestSegment, ranges: Sequence[Range]) -> bool:
    return any(seg.ended_at > start and seg.started_at < end for start, end in ranges)


def parse_manifest(data: bytes) -> SegmentManifest:
    """Raises ManifestError."""
    return SegmentManifest.from_json(data)


def check_manifest(
    data: bytes,
    *,
    unit_id: str,
    unit_key: Ed25519PublicKey | None,
    reported: Reported,
    offered: Sequence[str],
    ranges: Sequence[Range],
    exact: bool = True,
) -> ManifestCheck:
    """Check the unit's manifest (see the module docstring). `offered`: the names of the
    segment files offered with it. `exact`: the manifest was made for this upload, so it
    must select exactly those files, all in the ranges; otherwise (an export folder,
    staged for its own range) each offered file must be one it selects."""
    try:
        manifest = parse_manifest(data)
    except ManifestError as exc:
        return ManifestCheck(None, [str(exc)])
    problems: list[str] = []
    if manifest.unit_id != unit_id:
        problems.append(f"it is the manifest of unit {manifest.unit_id!r}, not {unit_id!r}")
    if unit_key is None:
        problems.append("the controller holds no signing key for the unit to check it with")
    else:
        problems += verify_manifest(manifest, unit_key)
    matched = 0
    by_seq = {e.seq: e for e in manifest.entries}
    for seq, entry in by_seq.items():
        held = reported.entries.get(seq)
        if held is None:
            continue
        if held[0] != entry.chain_hash:
            problems.append(
                f"{entry.label} differs from the entry the unit reported over MQTT on "
                f"{_when(held[1])}: the unit's index was rewritten after it reported it"
            )
        else:
            matched += 1
    for count, head, at in reported.checkpoints:
        at_count = by_seq.get(count)
        if at_count is not None and at_count.chain_hash != head:
            problems.append(
                f"the chain head at entry {count} differs from the checkpoint the unit "
                f"reported over MQTT on {_when(at)}: the unit's index was rewritten"
            )
    segments = manifest.segments()
    selected = {sid: segments[sid] for sid in manifest.selected if sid in segments}
    by_name = {seg.file_name: seg for seg in selected.values()}
    wanted = set(offered)
    if exact:
        missing = sorted(n for n in by_name if n not in wanted)
        if missing:
            problems.append(f"it selects segment files that were not sent: {', '.join(missing)}")
        outside = sorted(n for n, s in by_name.items() if not _overlaps(s, ranges))
        if outside:
            problems.append(
                f"it selects footage outside the requested ranges: {', '.join(outside)}"
            )
    return ManifestCheck(manifest, problems, by_name, matched)


def check_segment(
    path: Path,
    name: str,
    *,
    unit_id: str,
    listed: dict[str, ManifestSegment],
    reported: dict[str, list[tuple[int, str, datetime]]],
    ranges: Sequence[Range],
) -> tuple[str | None, str | None]:
    """(segment id, None) when the stored file `name` at `path` is the segment the unit's
    verified manifest lists under that name; else (segment id or None, the problem)."""
    try:
        with path.open("rb") as f:
            found = inspect_segment(f)
    except SegmentError as exc:
        return None, f"not an intact segment file: {exc}"
    except OSError as exc:
        return None, f"cannot be read back: {exc.strerror or exc}"
    header = found.header
    sid = header.segment_id
    if header.unit_id != unit_id:
        return sid, f"it was recorded by unit {header.unit_id!r}, not {unit_id!r}"
    entry = listed.get(name)
    if entry is None:
        return sid, "the unit's signed manifest does not list it"
    if entry.segment_id != sid:
        return sid, (
            f"it holds segment {sid}, but the unit's signed manifest lists segment "
            f"{entry.segment_id} under this name"
        )
    if (found.file_bytes, found.file_sha256) != (entry.size, entry.sha256):
        return sid, (
            f"its SHA-256 {found.file_sha256[:16]}... ({found.file_bytes} bytes) is not the "
            f"{entry.sha256[:16]}... ({entry.size} bytes) the unit's signed manifest lists: "
            "the file was replaced or altered"
        )
    if entry.deleted_at is not None:
        return sid, f"the unit's manifest records it deleted ({entry.deleted_reason})"
    if not _overlaps(entry, ranges):
        return sid, "it is outside the requested ranges"
    for size, sha, at in reported.get(sid, []):
        if (size, sha) != (entry.size, entry.sha256):
            return sid, (
                f"it is not the file the unit reported over MQTT on {_when(at)} "
                f"(SHA-256 {sha[:16]}...): the unit's record was rewritten"
            )
    return sid, None
