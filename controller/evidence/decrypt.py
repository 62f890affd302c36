"""Decrypt exported segments for a data controller, proving continuity on the way.

For each segment file: the unit's signed manifest must list it (by the segment id in its
authenticated header), with the same sha256 and file name; every chunk must pass its tag
in order; the trailer must agree. Segments the manifest lists but that were not supplied
are named too, as are breaks in the manifest's hash chain and a bad signature. Each good
segment (fragmented MP4 inside) is remuxed, without re-encoding, into a regular MP4.
"""

from __future__ import annotations

import hashlib
import io
import logging
import struct
from collections.abc import Callable, Sequence
from enum import StrEnum
from pathlib import Path

import av
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, ConfigDict

from controller.errors import ControllerError
from protocol.errors import SegmentError
from protocol.evidence_keys import EvidencePrivateKey
from protocol.segment.format import DecodedSegment
from protocol.segment.manifest import ManifestError, SegmentManifest, verify_manifest
from protocol.segment.reader import read_segment

__all__ = [
    "DecryptReport",
    "EvidenceError",
    "SegmentResult",
    "Status",
    "complete_fragments",
    "decrypt_segments",
    "remux_to_mp4",
]

log = logging.getLogger(__name__)


class EvidenceError(ControllerError):
    """The evidence decryption cannot start (unreadable manifest, unusable output)."""

    status = 422


class Status(StrEnum):
    OK = "ok"
    TRUNCATED = "truncated"  # cut by a power loss on the unit; what remains is authentic
    DELETED = "deleted"  # listed, removed on the unit (retention), recorded in the chain
    TAMPERED = "tampered"  # fails decryption/verification: header, chunk or trailer
    REPLACED = "replaced"  # decrypts, but is not the file the unit listed (sha256 differs)
    RENAMED = "renamed"  # the right file under another segment's name
    MISSING = "missing"  # listed and not deleted, but not supplied
    UNLISTED = "not in manifest"
    DUPLICATE = "duplicate"
    MANIFEST = "manifest"  # the manifest itself fails verification


#: Statuses that mean the evidence was interfered with (non-zero exit).
TAMPERING = frozenset(
    {
        Status.TAMPERED,
        Status.REPLACED,
        Status.RENAMED,
        Status.MISSING,
        Status.UNLISTED,
        Status.DUPLICATE,
        Status.MANIFEST,
    }
)


class SegmentResult(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Status
    segment_id: str | None = None
    file: str | None = None
    chunk: int | None = None
    detail: str = ""
    output: str | None = None


class DecryptReport(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    unit_id: str
    results: list[SegmentResult]

    @property
    def tampering(self) -> bool:
        return any(r.status in TAMPERING for r in self.results)


def complete_fragments(fmp4: bytes) -> bytes:
    """`fmp4` cut after its last complete `mdat` box: a segment cut by a power loss ends
    inside a fragment, whose samples must not be passed off as whole."""
    pos = end = 0
    while pos + 8 <= len(fmp4):
        size, kind = struct.unpack(">I4s", fmp4[pos : pos + 8])
        if size == 1 and pos + 16 <= len(fmp4):
            (size,) = struct.unpack(">Q", fmp4[pos + 8 : pos + 16])
        if size < 8 or pos + size > len(fmp4):
            break
        pos += size
        if kind == b"mdat":
            end = pos
    return fmp4[:end]


def remux_to_mp4(fragmented: bytes, out: Path) -> int:
    """Copy every packet of a fragmented MP4 into a regular (faststart) MP4 without
    re-encoding; returns the packets written. A last fragment cut by a power loss ends
    the copy where it is cut."""
    packets = 0
    with (
        av.open(io.BytesIO(fragmented), "r") as src,
        av.open(str(out), "w", format="mp4", options={"movflags": "+faststart"}) as dst,
    ):
        mapping = {s.index: dst.add_stream_from_template(s) for s in src.streams}
        try:
            for packet in src.demux():
                if packet.dts is None:
                    continue
                packet.stream = mapping[packet.stream.index]
                dst.mux(packet)
                packets += 1
        except av.FFmpegError as exc:
            if packets == 0:
                raise
            log.warning("remux of %s stopped at an incomplete fragment: %s", out.name, exc)
    return packets


class _Run:
    def __init__(self, manifest: SegmentManifest, key: EvidencePrivateKey, out_dir: Path):
        self.manifest = manifest
        self.listed = manifest.segments()
        self.key = key
        self.out_dir = out_dir
        self.seen: set[str] = set()

    def one(self, path: Path) -> SegmentResult:
        data = path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        try:
            decoded = read_segment(io.BytesIO(data), self.key, expected_unit=self.manifest.unit_id)
        except SegmentError as exc:
            sid = exc.segment_id or path.stem
            listed = self.listed.get(sid)
            note = "" if listed is None or listed.sha256 == sha else " (sha256 differs too)"
            self.seen.add(sid)
            return SegmentResult(
                status=Status.TAMPERED, segment_id=sid, file=path.name, chunk=exc.chunk,
                detail=str(exc) + note,
            )  # fmt: skip
        sid = decoded.header.segment_id
        result = SegmentResult(status=Status.OK, segment_id=sid, file=path.name)
        listed = self.listed.get(sid)
        if sid in self.seen:
            return result.model_copy(
                update={"status": Status.DUPLICATE, "detail": "segment supplied twice"}
            )
        self.seen.add(sid)
        if listed is None:
            return result.model_copy(
                update={"status": Status.UNLISTED, "detail": "the unit's manifest does not list it"}
            )
        if listed.sha256 != sha or listed.size != len(data):
            why = f"sha256 {sha[:12]} is not the listed {listed.sha256[:12]}: another file"
            return result.model_copy(update={"status": Status.REPLACED, "detail": why})
        if listed.file_name != path.name:
            why = f"file {path.name} holds segment {sid} (listed as {listed.file_name})"
            return result.model_copy(update={"status": Status.RENAMED, "detail": why})
        return self.write(decoded, result)

    def write(self, decoded: DecodedSegment, result: SegmentResult) -> SegmentResult:
        status = Status.TRUNCATED if decoded.truncated else Status.OK
        chunks = decoded.trailer.chunks
        detail = f"{chunks} chunks" + (", cut by a power loss on the unit" * decoded.truncated)
        media = complete_fragments(decoded.plaintext) if decoded.truncated else decoded.plaintext
        if not media:
            return result.model_copy(update={"status": status, "detail": detail + ", no footage"})
        out = self.out_dir / f"{decoded.header.segment_id}.mp4"
        try:
            packets = remux_to_mp4(media, out)
        except av.FFmpegError as exc:
            raw = out.with_suffix(".fmp4")
            raw.write_bytes(decoded.plaintext)
            return result.model_copy(
                update={"status": status, "output": raw.name, "detail": f"not remuxed: {exc}"}
            )
        detail += f", {packets} packets"
        return result.model_copy(update={"status": status, "output": out.name, "detail": detail})

    def absent(self) -> list[SegmentResult]:
        results = []
        for sid in self.manifest.selected:
            listed = self.listed.get(sid)
            if sid in self.seen or listed is None:
                continue
            if listed.deleted_at is not None:
                when = listed.deleted_at.isoformat()
                detail = f"deleted on the unit at {when} ({listed.deleted_reason})"
                results.append(SegmentResult(status=Status.DELETED, segment_id=sid, detail=detail))
            else:
                results.append(
                    SegmentResult(
                        status=Status.MISSING,
                        segment_id=sid,
                        file=listed.file_name,
                        detail="listed in the manifest but not supplied",
                    )
                )
        return results


def decrypt_segments(
    files: Sequence[Path],
    *,
    manifest: bytes,
    unit_key: Ed25519PublicKey,
    evidence_key: EvidencePrivateKey,
    out_dir: Path,
    on_progress: Callable[[Path], None] | None = None,
) -> DecryptReport:
    """Verify and decrypt `files` against the unit's `manifest` into `out_dir`."""
    try:
        parsed = SegmentManifest.from_json(manifest)
    except ManifestError as exc:
        raise EvidenceError(str(exc)) from exc
    out_dir.mkdir(parents=True, exist_ok=True)
    clash = [p.name for p in files if (out_dir / f"{p.stem}.mp4").exists()]
    if clash:
        raise EvidenceError(f"{out_dir} already holds output for {', '.join(clash)}")
    results = [
        SegmentResult(status=Status.MANIFEST, detail=problem)
        for problem in verify_manifest(parsed, unit_key)
    ]
    run = _Run(parsed, evidence_key, out_dir)
    for path in files:
        result = run.one(path)
        log.info("unit=%s segment=%s evidence=%s", parsed.unit_id, result.segment_id, result.status)
        results.append(result)
        if on_progress is not None:
            on_progress(path)
    results += run.absent()
    return DecryptReport(unit_id=parsed.unit_id, results=results)
