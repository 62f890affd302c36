"""Making an exhibit: footage retrieved from the units, decrypted for this one job, as
playable MP4 by stream copy, with everything a court or a requester needs to trust it.

Input, per unit: the folder of retrieved ciphertext (segment files under their unit file
names and the unit's signed index manifest, `manifest.json`), the unit's signing public
key, the case's time ranges on that unit and the checkpoints the unit reported over MQTT
at the time. Also: the evidence private key, unlocked by the data controller's passphrase
for this job and never kept; the controller's Ed25519 signing key; the case and the
release record.

Output folder:

    README.txt                 for the recipient
    footage/<unit>_<local start>.mp4   one per unbroken stretch of recording
    units/<unit>/segment-manifest.json the unit's signed record, as received
    controller-key.pem         the controller's public key
    manifest.json              release record, SHA-256 of every file and of each source
                               (encrypted) segment, the unit checkpoints covering the
                               range and the result of checking the chain
    manifest.sig               the controller's Ed25519 signature over manifest.json
    verify.py                  checks all of it with plain python3

Nothing is written under the final name until everything checked out: the exhibit is
built beside it and renamed; a failure removes what was written, decrypted footage
included. Any sign of tampering (a segment altered, replaced, renamed, missing; a chain
break; a checkpoint the unit reported that its record no longer matches) stops the job
with every problem named.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from controller.evidence import verify_exhibit as fmt
from controller.evidence.decrypt import (
    TAMPERING,
    EvidenceError,
    SegmentResult,
    Status,
    decrypt_segments,
)
from controller.evidence.exhibit_readme import readme_text
from controller.evidence.footage_join import JoinedFile, SegmentClip, join_segments
from protocol.evidence_keys import EvidencePrivateKey
from protocol.segment.format import iso_utc
from protocol.segment.manifest import (
    Checkpoint,
    ManifestError,
    ManifestSegment,
    SegmentManifest,
    key_id,
    verify_manifest,
)

__all__ = [
    "LOCAL_ZONE",
    "CaseSummary",
    "Exhibit",
    "ExhibitError",
    "ReleaseRecord",
    "UnitEvidence",
    "exhibit_folder_name",
    "local_words",
    "make_exhibit",
    "zip_exhibit",
]

log = logging.getLogger(__name__)

LOCAL_ZONE = ZoneInfo("Europe/London")
UNIT_MANIFEST = "manifest.json"
_SAFE = re.compile(r"[^A-Za-z0-9._-]")

Progress = Callable[[int, int, str], None]


class ExhibitError(EvidenceError):
    """An exhibit cannot be made; `problems` names every reason (tampering found, a
    file missing, a folder in the way)."""

    status = 409

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message + ("" if not problems else ": " + "; ".join(problems)))
        self.problems = list(problems)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CaseSummary(_Model):
    number: str = Field(description="Case number, e.g. C-2026-0007")
    case_type: str = Field(description="police_request, subject_access, ...")
    external_ref: str = Field("", description="Police URN, incident number or SAR reference")


class ReleaseRecord(_Model):
    """Who receives the exhibit, why, how, and who released it."""

    exhibit_number: str = Field(min_length=1, max_length=60)
    released_at: AwareDatetime
    released_by: str = Field(min_length=1)
    recipient_name: str = Field(min_length=1, max_length=200)
    recipient_org: str = Field("", max_length=200)
    reason: str = Field(min_length=1)
    lawful_basis: str = Field(min_length=1)
    reference: str = Field("", max_length=200)
    method: str = Field(min_length=1, max_length=100, description="e.g. encrypted USB")


@dataclass(frozen=True)
class UnitEvidence:
    """One unit's retrieved footage and what the controller knows of the unit."""

    unit_id: str
    folder: Path
    signing_key: Ed25519PublicKey
    #: The case's ranges on this unit; segments overlapping any of them go in. Empty: all
    #: the segments the unit's manifest selects.
    ranges: tuple[tuple[datetime, datetime], ...] = ()
    #: Checkpoints the unit reported over MQTT (the controller's stored copies).
    reported: tuple[Checkpoint, ...] = ()


@dataclass(frozen=True)
class Exhibit:
    number: str
    path: Path
    manifest_sha256: str
    footage: tuple[str, ...]
    total_bytes: int


def local_words(value: datetime) -> str:
    """`Sunday 1 March 2026, 07:00:00 GMT`: UK local time, with GMT or BST said."""
    local = value.astimezone(LOCAL_ZONE)
    return f"{local:%A} {local.day} {local:%B %Y, %H:%M:%S %Z}"


def exhibit_folder_name(number: str) -> str:
    """`C-2026-0007/EX1` -> `C-2026-0007_EX1`."""
    return _SAFE.sub("_", number.replace("/", "_"))


def _sha256(path: Path) -> tuple[int, str]:
    size, digest = fmt.sha256_file(str(path))
    return size, digest


def _overlaps(seg: ManifestSegment, ranges: Sequence[tuple[datetime, datetime]]) -> bool:
    return not ranges or any(seg.started_at < end and seg.ended_at > start for start, end in ranges)


@dataclass
class _UnitRun:
    """What decrypting one unit's footage gave."""

    unit: UnitEvidence
    manifest: SegmentManifest
    manifest_bytes: bytes
    chosen: list[ManifestSegment]
    results: dict[str, SegmentResult] = field(default_factory=dict)
    clips: list[SegmentClip] = field(default_factory=list)
    joined: list[JoinedFile] = field(default_factory=list)


class _Builder:
    def __init__(
        self,
        units: Sequence[UnitEvidence],
        evidence_key: EvidencePrivateKey,
        work: Path,
        on_progress: Progress | None,
    ) -> None:
        self.units = units
        self.key = evidence_key
        self.work = work
        self.on_progress = on_progress
        self.done = 0
        self.total = 0

    def progress(self, what: str) -> None:
        self.done += 1
        if self.on_progress is not None:
            self.on_progress(self.done, self.total, what)

    def open_unit(self, unit: UnitEvidence) -> _UnitRun:
        path = unit.folder / UNIT_MANIFEST
        try:
            data = path.read_bytes()
            manifest = SegmentManifest.from_json(data)
        except OSError as exc:
            raise ExhibitError(f"unit {unit.unit_id}: no signed manifest at {path}") from exc
        except ManifestError as exc:
            raise ExhibitError(f"unit {unit.unit_id}: {exc}") from exc
        if manifest.unit_id != unit.unit_id:
            raise ExhibitError(
                f"unit {unit.unit_id}: the manifest is from unit {manifest.unit_id!r}"
            )
        problems = verify_manifest(manifest, unit.signing_key)
        problems += self.reported_problems(unit, manifest)
        if problems:
            raise ExhibitError(f"unit {unit.unit_id}: the unit's record does not verify", problems)
        listed = manifest.segments()
        chosen = [
            listed[sid]
            for sid in manifest.selected
            if sid in listed and _overlaps(listed[sid], unit.ranges)
        ]
        bad = [s.file_name for s in chosen if Path(s.file_name).name != s.file_name]
        if bad:
            raise ExhibitError(f"unit {unit.unit_id}: unsafe file names in manifest", bad)
        if not chosen:
            raise ExhibitError(f"unit {unit.unit_id}: no recorded footage in the case's ranges")
        return _UnitRun(unit, manifest, data, chosen)

    @staticmethod
    def reported_problems(unit: UnitEvidence, manifest: SegmentManifest) -> list[str]:
        by_seq = {e.seq: e for e in manifest.entries}
        problems = []
        for cp in unit.reported:
            entry = by_seq.get(cp.count)
            when = iso_utc(cp.signed_at)
            if not cp.verify(unit.signing_key):
                problems.append(f"the checkpoint reported at {when} does not verify")
            elif entry is not None and entry.chain_hash != cp.head:
                problems.append(
                    f"the checkpoint reported at {when} differs from the unit's record "
                    f"at entry {cp.count} (the index was rewritten after it was reported)"
                )
        return problems

    def decrypt(self, run: _UnitRun) -> None:
        present = [s for s in run.chosen if s.deleted_at is None]
        files = [run.unit.folder / s.file_name for s in present]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise ExhibitError(f"unit {run.unit.unit_id}: retrieved files missing", missing)
        out = self.work / exhibit_folder_name(run.unit.unit_id)
        report = decrypt_segments(
            files,
            manifest=run.manifest_bytes,
            unit_key=run.unit.signing_key,
            evidence_key=self.key,
            out_dir=out,
            on_progress=lambda p: self.progress(f"decrypted {p.name}"),
        )
        wanted = {s.segment_id for s in run.chosen}
        problems = [
            f"{r.segment_id or r.file or 'manifest'}: {r.status.value}, {r.detail}"
            for r in report.results
            if r.status in TAMPERING
            and not (r.status is Status.MISSING and r.segment_id not in wanted)
        ]
        problems += [
            f"{r.segment_id}: could not be made into MP4 ({r.detail})"
            for r in report.results
            if r.output is not None and not r.output.endswith(".mp4")
        ]
        if problems:
            raise ExhibitError(f"unit {run.unit.unit_id}: the footage does not verify", problems)
        run.results = {r.segment_id: r for r in report.results if r.segment_id in wanted}
        by_id = {s.segment_id: s for s in present}
        for sid, result in run.results.items():
            if result.output is not None and sid in by_id:
                seg = by_id[sid]
                run.clips.append(
                    SegmentClip(sid, out / result.output, seg.started_at, seg.ended_at)
                )

    def join(self, run: _UnitRun, footage_dir: Path) -> None:
        unit = exhibit_folder_name(run.unit.unit_id)

        def name(first: SegmentClip) -> str:
            return f"{unit}_{first.started_at.astimezone(LOCAL_ZONE):%Y-%m-%d_%H-%M-%S}.mp4"

        run.joined = join_segments(run.clips, footage_dir, name)
        self.progress(f"joined the footage of unit {run.unit.unit_id}")


def _footage_doc(run: _UnitRun, root: Path) -> list[dict[str, Any]]:
    return [
        {
            "file": j.path.relative_to(root).as_posix(),
            "unit_id": run.unit.unit_id,
            "start": iso_utc(j.started_at),
            "end": iso_utc(j.ended_at),
            "start_local": local_words(j.started_at),
            "end_local": local_words(j.ended_at),
            "segments": [c.segment_id for c in j.segments],
            "packets": j.packets,
        }
        for j in run.joined
    ]


def _sources_doc(run: _UnitRun, root: Path) -> list[dict[str, Any]]:
    in_file = {
        c.segment_id: j.path.relative_to(root).as_posix() for j in run.joined for c in j.segments
    }
    out = []
    for seg in run.chosen:
        if seg.deleted_at is not None:
            continue
        result = run.results.get(seg.segment_id)
        out.append(
            {
                "unit_id": run.unit.unit_id,
                "segment_id": seg.segment_id,
                "file_name": seg.file_name,
                "size": seg.size,
                "sha256": seg.sha256,
                "started_at": iso_utc(seg.started_at),
                "ended_at": iso_utc(seg.ended_at),
                "result": result.status.value if result else "not supplied",
                "detail": result.detail if result else "",
                "in_file": in_file.get(seg.segment_id),
            }
        )
    return out


def _absent_doc(run: _UnitRun) -> list[dict[str, Any]]:
    return [
        {
            "unit_id": run.unit.unit_id,
            "segment_id": seg.segment_id,
            "result": "deleted",
            "detail": f"removed on the unit ({seg.deleted_reason}) at "
            f"{local_words(seg.deleted_at)}",
        }
        for seg in run.chosen
        if seg.deleted_at is not None
    ]


def _unit_doc(run: _UnitRun, manifest_name: str) -> dict[str, Any]:
    entries = run.manifest.entries
    by_seq = {e.seq: e for e in entries}
    reported = [
        {**cp.model_dump(mode="json"), "agrees": True}
        for cp in run.unit.reported
        if cp.count in by_seq
    ]
    return {
        "unit_id": run.unit.unit_id,
        "signing_key": run.unit.signing_key.public_bytes_raw().hex(),
        "key_id": key_id(run.unit.signing_key),
        "segment_manifest": manifest_name,
        "checkpoint": run.manifest.checkpoint.model_dump(mode="json"),
        "chain": {
            "first_entry": entries[0].seq,
            "last_entry": entries[-1].seq,
            "entries": len(entries),
            "result": "verifies: every entry links to the one before and the last is the "
            "head the unit signed",
        },
        "reported_checkpoints": reported,
    }


def _write_json(path: Path, doc: dict[str, Any]) -> bytes:
    data = (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    path.write_bytes(data)
    return data


def make_exhibit(
    *,
    out_dir: Path,
    case: CaseSummary,
    release: ReleaseRecord,
    units: Sequence[UnitEvidence],
    evidence_key: EvidencePrivateKey,
    signing_key: Ed25519PrivateKey,
    made_at: datetime,
    kind: Literal["master", "derived"] = "master",
    derived_from: str | None = None,
    on_progress: Progress | None = None,
) -> Exhibit:
    """Make the exhibit in `out_dir` (which must not exist yet). See the module docstring."""
    if out_dir.exists():
        raise ExhibitError(f"{out_dir} already exists")
    if not units:
        raise ExhibitError("no footage to make an exhibit from")
    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # left by a crash mid-way: never trusted
    (partial / "footage").mkdir(parents=True)
    try:
        exhibit = _build(partial, case, release, units, evidence_key, signing_key, made_at,
                         kind, derived_from, on_progress)  # fmt: skip
        partial.rename(out_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    log.info("exhibit=%s made files=%d", release.exhibit_number, len(exhibit.footage))
    return Exhibit(
        number=exhibit.number,
        path=out_dir,
        manifest_sha256=exhibit.manifest_sha256,
        footage=exhibit.footage,
        total_bytes=exhibit.total_bytes,
    )


def _build(
    root: Path,
    case: CaseSummary,
    release: ReleaseRecord,
    units: Sequence[UnitEvidence],
    evidence_key: EvidencePrivateKey,
    signing_key: Ed25519PrivateKey,
    made_at: datetime,
    kind: str,
    derived_from: str | None,
    on_progress: Progress | None,
) -> Exhibit:
    work = root / ".work"
    builder = _Builder(units, evidence_key, work, on_progress)
    runs = [builder.open_unit(u) for u in units]
    builder.total = sum(len([s for s in r.chosen if s.deleted_at is None]) + 1 for r in runs)
    for run in runs:
        builder.decrypt(run)
        builder.join(run, root / "footage")
    shutil.rmtree(work)  # the per-segment MP4s: decrypted footage outside the exhibit

    for run in runs:
        folder = root / "units" / exhibit_folder_name(run.unit.unit_id)
        folder.mkdir(parents=True)
        (folder / "segment-manifest.json").write_bytes(run.manifest_bytes)
    public_raw = signing_key.public_key().public_bytes_raw()
    (root / fmt.KEY_FILE).write_bytes(fmt.public_key_pem(public_raw))
    (root / "verify.py").write_bytes(Path(fmt.__file__).read_bytes())

    footage = [f for run in runs for f in _footage_doc(run, root)]
    doc: dict[str, Any] = {
        "format": fmt.EXHIBIT_FORMAT,
        "version": 1,
        "exhibit": release.exhibit_number,
        "kind": kind,
        "derived_from_manifest_sha256": derived_from,
        "made_at": iso_utc(made_at),
        "made_at_local": local_words(made_at),
        "time_zone": str(LOCAL_ZONE),
        "case": case.model_dump(mode="json"),
        "release": {
            **release.model_dump(mode="json"),
            "released_at": iso_utc(release.released_at),
            "released_at_local": local_words(release.released_at),
        },
        "ranges": [
            {
                "unit_id": u.unit_id,
                "start": iso_utc(start),
                "end": iso_utc(end),
                "start_local": local_words(start),
                "end_local": local_words(end),
            }
            for u in units
            for start, end in u.ranges
        ],
        "footage": footage,
        "sources": [s for run in runs for s in _sources_doc(run, root)],
        "absent": [a for run in runs for a in _absent_doc(run)],
        "units": [
            _unit_doc(run, f"units/{exhibit_folder_name(run.unit.unit_id)}/segment-manifest.json")
            for run in runs
        ],
        "signer": {"key_id": fmt.key_id(public_raw), "key_file": fmt.KEY_FILE},
    }
    (root / "README.txt").write_text(readme_text(doc, footage), encoding="utf-8")
    files = []
    total = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        size, digest = _sha256(path)
        total += size
        if path.name == fmt.KEY_FILE and path.parent == root:
            continue  # bound by the signature itself: manifest.sig names its key id
        files.append({"name": path.relative_to(root).as_posix(), "size": size, "sha256": digest})
    doc["files"] = files
    manifest = _write_json(root / fmt.MANIFEST, doc)
    manifest_sha = hashlib.sha256(manifest).hexdigest()
    signature = signing_key.sign(fmt.signed_message(manifest_sha))
    (root / fmt.SIGNATURE).write_bytes(
        fmt.signature_document(manifest_sha, fmt.key_id(public_raw), signature)
    )
    return Exhibit(
        number=release.exhibit_number,
        path=root,
        manifest_sha256=manifest_sha,
        footage=tuple(f["file"] for f in footage),
        total_bytes=total + len(manifest),
    )


def zip_exhibit(folder: Path, out: Path) -> Path:
    """The exhibit folder as one zip (the folder itself at its root), for download.
    Footage is stored as is (already compressed); the rest deflated."""
    partial = out.with_name(out.name + ".partial")
    with zipfile.ZipFile(partial, "w") as zf:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            arcname = f"{folder.name}/{path.relative_to(folder).as_posix()}"
            method = zipfile.ZIP_STORED if path.suffix == ".mp4" else zipfile.ZIP_DEFLATED
            zf.write(path, arcname, compress_type=method)
    partial.rename(out)
    return out
