"""The hash chain over a unit's segment index, the unit's signed checkpoints of its head,
and the manifest exported with footage so the controller can prove continuity.

The chain is a log of entries, each `{"kind": "segment", ...}` (a sealed segment added)
or `{"kind": "deletion", ...}` (a segment file removed, e.g. by retention: recorded, never
hidden). `chain_hash = sha256(prev_chain_hash_bytes || canonical_json(body))`, starting
from 32 zero bytes. A checkpoint is the unit's Ed25519 signature over the head hash, the
entry count and the time. A manifest carries the run of entries from the first selected
segment up to a checkpoint: editing, inserting, removing or reordering any entry in it
breaks the link to the signed head. See docs/segment-format.md.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from protocol.errors import ProtocolError
from protocol.segment.format import SegmentSummaryInfo, canonical_json, iso_utc

__all__ = [
    "GENESIS_HASH",
    "ChainEntry",
    "Checkpoint",
    "ManifestError",
    "ManifestSegment",
    "SegmentManifest",
    "chain_hash",
    "check_chain",
    "deletion_entry",
    "key_id",
    "segment_entry",
    "verify_manifest",
]

GENESIS_HASH = "0" * 64
MANIFEST_FORMAT: Literal["cctv-segment-manifest"] = "cctv-segment-manifest"
_CHECKPOINT_DOMAIN = b"cctv-segment-checkpoint-v1\0"
Hex64 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class ManifestError(ProtocolError):
    """A manifest that cannot be read at all (its problems are listed, not raised)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def key_id(public_key: Ed25519PublicKey) -> str:
    """Short fingerprint of a unit signing key (same rule as the controller's keys)."""
    return hashlib.sha256(public_key.public_bytes_raw()).hexdigest()[:16]


def chain_hash(prev_hash: str, body: Mapping[str, Any]) -> str:
    return hashlib.sha256(bytes.fromhex(prev_hash) + canonical_json(body)).hexdigest()


def segment_entry(unit_id: str, summary: SegmentSummaryInfo, file_name: str) -> dict[str, Any]:
    """The chained body for a segment added to the index."""
    return {
        "kind": "segment",
        "unit_id": unit_id,
        "segment_id": summary.segment_id,
        "started_at": iso_utc(summary.started_at),
        "ended_at": iso_utc(summary.ended_at),
        "file_name": file_name,
        "size": summary.file_bytes,
        "sha256": summary.file_sha256,
        "chunks": summary.chunks,
        "plaintext_bytes": summary.plaintext_bytes,
        "truncated": summary.truncated,
    }


def deletion_entry(
    unit_id: str, segment_id: str, deleted_at: datetime, reason: str
) -> dict[str, Any]:
    """The chained body for a segment file removed (retention, disk pressure, missing)."""
    return {
        "kind": "deletion",
        "unit_id": unit_id,
        "segment_id": segment_id,
        "deleted_at": iso_utc(deleted_at),
        "reason": reason,
    }


class ChainEntry(_Model):
    seq: int = Field(ge=1, description="1-based position in the unit's chain")
    prev_hash: Hex64
    chain_hash: Hex64
    body: dict[str, Any]

    @property
    def label(self) -> str:
        sid = self.body.get("segment_id", "?")
        return f"entry {self.seq} ({self.body.get('kind', '?')} of segment {sid})"


class Checkpoint(_Model):
    """Signed by the unit: "my chain had `count` entries with head `head` at `signed_at`"."""

    unit_id: str = Field(max_length=64)
    count: int = Field(ge=0)
    head: Hex64
    signed_at: AwareDatetime
    key_id: str = Field(max_length=64)
    signature: str = Field(
        max_length=200, description="Base64 Ed25519 signature over signed_bytes()"
    )

    def signed_bytes(self) -> bytes:
        doc = {
            "unit_id": self.unit_id,
            "count": self.count,
            "head": self.head,
            "signed_at": iso_utc(self.signed_at),
            "key_id": self.key_id,
        }
        return _CHECKPOINT_DOMAIN + canonical_json(doc)

    @classmethod
    def create(
        cls, key: Ed25519PrivateKey, *, unit_id: str, count: int, head: str, signed_at: datetime
    ) -> Checkpoint:
        draft = cls(
            unit_id=unit_id,
            count=count,
            head=head,
            signed_at=signed_at,
            key_id=key_id(key.public_key()),
            signature="",
        )
        signature = base64.b64encode(key.sign(draft.signed_bytes())).decode()
        return draft.model_copy(update={"signature": signature})

    def verify(self, public_key: Ed25519PublicKey) -> bool:
        try:
            public_key.verify(base64.b64decode(self.signature, validate=True), self.signed_bytes())
        except (InvalidSignature, ValueError):
            return False
        return True


class ManifestSegment(_Model):
    """One segment as the manifest states it, with its deletion if it was removed."""

    segment_id: str
    started_at: AwareDatetime
    ended_at: AwareDatetime
    file_name: str
    size: int
    sha256: Hex64
    chunks: int
    plaintext_bytes: int
    truncated: bool
    seq: int
    deleted_at: AwareDatetime | None = None
    deleted_reason: str | None = None


class SegmentManifest(_Model):
    """Written by the unit for an export: entries from the first selected segment to the
    checkpoint, the selected segment ids, and the checkpoint."""

    format: Literal["cctv-segment-manifest"] = MANIFEST_FORMAT
    version: Literal[1] = 1
    unit_id: str
    generated_at: AwareDatetime
    selected: list[str]
    entries: list[ChainEntry]
    checkpoint: Checkpoint

    def to_json(self) -> bytes:
        return self.model_dump_json(indent=2).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> SegmentManifest:
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ManifestError(f"not a segment manifest: {where}: {first['msg']}") from exc

    def segments(self) -> dict[str, ManifestSegment]:
        """Segments added in this run of the chain, with any later deletion applied."""
        found: dict[str, ManifestSegment] = {}
        for entry in self.entries:
            body = entry.body
            try:
                if body.get("kind") == "segment":
                    fields = {k: v for k, v in body.items() if k not in ("kind", "unit_id")}
                    found[body["segment_id"]] = ManifestSegment(seq=entry.seq, **fields)
                elif body.get("kind") == "deletion" and body.get("segment_id") in found:
                    sid = body["segment_id"]
                    found[sid] = found[sid].model_copy(
                        update={
                            "deleted_at": datetime.fromisoformat(body["deleted_at"]),
                            "deleted_reason": str(body["reason"]),
                        }
                    )
            except (KeyError, TypeError, ValueError):
                continue  # reported by check_chain
        return found


def _body_problem(body: Mapping[str, Any], unit_id: str | None) -> str | None:
    kind = body.get("kind")
    keys = set(body)
    if kind == "segment":
        expected = {
            "kind", "unit_id", "segment_id", "started_at", "ended_at", "file_name", "size",
            "sha256", "chunks", "plaintext_bytes", "truncated",
        }  # fmt: skip
    elif kind == "deletion":
        expected = {"kind", "unit_id", "segment_id", "deleted_at", "reason"}
    else:
        return f"unknown entry kind {kind!r}"
    if keys != expected:
        return f"fields {sorted(keys ^ expected)} missing or unexpected"
    if unit_id is not None and body["unit_id"] != unit_id:
        return f"belongs to unit {body['unit_id']!r}"
    return None


def check_chain(
    entries: Sequence[ChainEntry], *, unit_id: str | None = None, prev_hash: str | None = None
) -> list[str]:
    """Every way `entries` fail to be one unbroken run of a chain, in words. An empty list
    means each entry's hash matches its content and links to the one before (and the first
    to the genesis hash when it is entry 1, or to `prev_hash` when given)."""
    problems: list[str] = []
    before: ChainEntry | None = None
    for entry in entries:
        if before is None:
            anchor = GENESIS_HASH if entry.seq == 1 else prev_hash
            if anchor is not None and entry.prev_hash != anchor:
                problems.append(f"{entry.label}: does not follow from the chain's start")
        else:
            if entry.seq != before.seq + 1:
                problems.append(
                    f"{entry.label}: sequence jumps from {before.seq} to {entry.seq} "
                    "(entries removed, inserted or reordered)"
                )
            if entry.prev_hash != before.chain_hash:
                problems.append(
                    f"{entry.label}: does not link to the entry before it "
                    "(entries removed, inserted or reordered)"
                )
        if (why := _body_problem(entry.body, unit_id)) is not None:
            problems.append(f"{entry.label}: {why}")
        elif chain_hash(entry.prev_hash, entry.body) != entry.chain_hash:
            problems.append(f"{entry.label}: content does not match its chain hash (edited)")
        before = entry
    return problems


def verify_manifest(manifest: SegmentManifest, unit_key: Ed25519PublicKey) -> list[str]:
    """All problems with a manifest: chain breaks, a run that does not end at the signed
    checkpoint, a bad signature, a selected segment not in the run. Empty: authentic."""
    cp = manifest.checkpoint
    problems = check_chain(manifest.entries, unit_id=manifest.unit_id)
    if cp.unit_id != manifest.unit_id:
        problems.append(f"checkpoint is for unit {cp.unit_id!r}, not {manifest.unit_id!r}")
    if cp.key_id != key_id(unit_key) or not cp.verify(unit_key):
        problems.append("checkpoint signature does not verify with the unit's signing key")
    last = manifest.entries[-1] if manifest.entries else None
    if last is None or (last.seq, last.chain_hash) != (cp.count, cp.head):
        problems.append(
            f"entries do not end at the signed checkpoint (entry {cp.count}, head {cp.head[:12]})"
        )
    known = manifest.segments()
    problems += [f"selected segment {s} is not in the manifest's entries" for s in
                 manifest.selected if s not in known]  # fmt: skip
    return problems
