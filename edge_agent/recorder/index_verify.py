"""Checking the unit's segment index (`edge_agent.recorder.index`) and recovering it after
a crash.

`check_index` holds the index's rows and signed checkpoints against its hash chain;
`reconcile_files` squares the index with the segment files on disk. `SegmentIndex.verify_chain`
and `SegmentIndex.verify` call them; neither touches SQL, and this module does not import
the index: `reconcile_files` works on anything shaped like `IndexedSegments`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field

from protocol.errors import SegmentError
from protocol.segment.format import SEGMENT_SUFFIX, SegmentSummaryInfo, iso_utc
from protocol.segment.manifest import ChainEntry, Checkpoint, check_chain, segment_entry
from protocol.segment.reader import seal_truncated

from .index_entry import IndexEntry

__all__ = ["ChainReport", "IndexedSegments", "VerifyReport", "check_index", "reconcile_files"]


class IndexedSegments(Protocol):
    """What reconciling needs of the index (`SegmentIndex` is one)."""

    @property
    def unit_id(self) -> str: ...

    def entries(self) -> list[IndexEntry]: ...

    def get(self, segment_id: str) -> IndexEntry | None: ...

    def add(self, summary: SegmentSummaryInfo, *, file_name: str | None = None) -> str: ...

    def mark_deleted(self, segment_id: str, reason: str) -> str: ...


class ChainReport(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    entries: int
    problems: list[str] = Field(description="Each break in the chain or its checkpoints")

    @property
    def ok(self) -> bool:
        return not self.problems


class VerifyReport(BaseModel):
    """What `SegmentIndex.verify` found on disk and what it repaired."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    checked: int = 0
    added: list[str] = Field(default_factory=list, description="files indexed now")
    sealed_truncated: list[str] = Field(default_factory=list, description="crash-cut files")
    missing: list[str] = Field(default_factory=list, description="indexed, file gone")
    altered: list[str] = Field(default_factory=list, description="size or sha256 differs")
    removed: list[str] = Field(default_factory=list, description="deleted but still on disk")
    damaged: list[str] = Field(default_factory=list, description="files that cannot be read")

    @property
    def clean(self) -> bool:
        return not (self.added or self.missing or self.altered or self.removed or self.damaged)


def check_index(
    unit_id: str,
    chain: list[ChainEntry],
    rows: Iterable[IndexEntry],
    checkpoints: Iterable[Checkpoint],
    public_key: Ed25519PublicKey | None,
) -> ChainReport:
    """Check the chain, that each segment row says what its chain entry says, and every
    checkpoint against the chain (and, given the unit's public key, its signature)."""
    problems = check_chain(chain, unit_id=unit_id)
    bodies: dict[str, dict[str, Any]] = {}
    deletions: dict[str, dict[str, Any]] = {}
    for entry in chain:
        target = bodies if entry.body.get("kind") == "segment" else deletions
        target[str(entry.body.get("segment_id"))] = entry.body | {"seq": entry.seq}
    for row in rows:
        body = bodies.pop(row.segment_id, None)
        summary = row.summary(unit_id)
        if body is None or body.pop("seq") != row.seq:
            problems.append(f"segment {row.segment_id}: row has no chain entry (inserted)")
        elif segment_entry(unit_id, summary, row.file_name) != body:
            problems.append(f"segment {row.segment_id}: row differs from its chain entry")
        gone = deletions.pop(row.segment_id, None)
        stated = None if gone is None else (gone["deleted_at"], gone["reason"])
        held = None if row.deleted_at is None else (iso_utc(row.deleted_at), row.deleted_reason)
        if stated != held:
            problems.append(f"segment {row.segment_id}: deletion differs from the chain")
    problems += [f"segment {sid}: chain entry has no row (row deleted)" for sid in bodies]
    by_seq = {e.seq: e.chain_hash for e in chain}
    for cp in checkpoints:
        if public_key is not None and not cp.verify(public_key):
            problems.append(f"checkpoint at entry {cp.count}: signature does not verify")
        if cp.count and by_seq.get(cp.count) != cp.head:
            problems.append(f"checkpoint at entry {cp.count}: chain head differs")
    return ChainReport(entries=len(chain), problems=problems)


def reconcile_files(index: IndexedSegments, folder: Path) -> VerifyReport:
    """Reconcile `index` with the segment files in `folder`, as `SegmentIndex.verify`
    describes."""
    on_disk = {p.name: p for p in folder.glob("*" + SEGMENT_SUFFIX) if p.is_file()}
    report: dict[str, list[str]] = {k: [] for k in VerifyReport.model_fields if k != "checked"}
    rows = index.entries()
    for row in rows:
        path = on_disk.pop(row.file_name, None)
        if row.deleted_at is not None:
            if path is not None:
                path.unlink()
                report["removed"].append(row.segment_id)
        elif path is None:
            index.mark_deleted(row.segment_id, "missing at verify")
            report["missing"].append(row.segment_id)
        elif path.stat().st_size != row.size:
            report["altered"].append(row.segment_id)
    for _, path in sorted(on_disk.items()):
        _adopt(index, path, report)
    return VerifyReport(checked=len(rows), **report)


def _adopt(index: IndexedSegments, path: Path, report: dict[str, list[str]]) -> None:
    """Index a segment file the index does not know, sealing it first if it was cut."""
    try:
        with path.open("r+b") as f:
            summary = seal_truncated(f)
    except SegmentError as exc:
        if exc.detail.startswith(("file too short", "file ends inside the header")):
            path.unlink()  # nothing was encrypted yet: no footage lost
            report["removed"].append(path.name)
        else:
            report["damaged"].append(f"{path.name}: {exc}")
        return
    if summary.unit_id != index.unit_id:
        report["damaged"].append(f"{path.name}: recorded by unit {summary.unit_id}")
        return
    if index.get(summary.segment_id) is not None:
        report["damaged"].append(f"{path.name}: segment {summary.segment_id} indexed twice")
        return
    index.add(summary, file_name=path.name)
    report["added"].append(summary.segment_id)
    if summary.truncated:
        report["sealed_truncated"].append(summary.segment_id)
