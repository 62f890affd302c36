"""Importing footage an engineer collected from a unit's export folder (what the signed
`request_export` command stages: the encrypted segments and the unit's signed manifest),
for a unit that cannot upload (no data link, a damaged modem).

The files go through exactly the checks of an upload (`controller.evidence.uploads`), as a
retrieval of the case with source "import": the manifest's signature, hash chain and
agreement with what the unit reported over MQTT; each segment's header, size and SHA-256
against the manifest and the unit's reports. Only the segments that overlap the case's
ranges on the unit are taken (an export is staged for its own range); the others are
named as skipped. A retrieval the controller asked of the unit that has received nothing
yet is stood down (it fails with the reason), so the unit's own upload cannot race the
import; a retrieval already under way or finished refuses the import.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from controller import audit
from controller.errors import ControllerError
from controller.evidence.cases import load_case
from controller.evidence.holds import case_subject
from controller.evidence.retrieval_checks import file_sha256
from controller.evidence.uploads import UploadService
from controller.store.base import utcnow
from controller.store.evidence import CaseRangeRow, RetrievalRow
from protocol.evidence_upload import MANIFEST_NAME, OfferedFile, UploadOffer, UploadState
from protocol.segment.format import SEGMENT_SUFFIX
from protocol.segment.manifest import ManifestError, SegmentManifest

__all__ = ["ImportError_", "ImportResult", "import_folder"]

#: Case states in which footage may still be added.
FETCHING = ("approved", "retrieving", "retrieved")


class ImportError_(ControllerError):
    """The folder cannot be imported for this case (the message says why)."""

    status = 422


@dataclass
class ImportResult:
    upload_id: str
    state: UploadState
    skipped: list[str] = field(default_factory=list)

    @property
    def refused(self) -> list[str]:
        return [f.name for f in self.state.files if f.status == "refused"]


def _scan(folder: Path) -> tuple[SegmentManifest, list[Path]]:
    """The folder's manifest and segment files; ImportError_ when it holds no manifest."""
    path = folder / MANIFEST_NAME
    try:
        manifest = SegmentManifest.from_json(path.read_bytes())
    except FileNotFoundError as exc:
        raise ImportError_(
            f"{folder} holds no {MANIFEST_NAME} (the unit's signed manifest)"
        ) from exc
    except (OSError, ManifestError) as exc:
        raise ImportError_(f"{path}: {exc}") from exc
    return manifest, sorted(folder.glob("*" + SEGMENT_SUFFIX))


def _overlaps(start: datetime, end: datetime, ranges: list[tuple[datetime, datetime]]) -> bool:
    return any(end > a and start < b for a, b in ranges)


async def import_folder(
    service: UploadService,
    folder: Path,
    *,
    case_number: str,
    unit_id: str,
    actor: str,
    on_file: Callable[[str], None] = lambda _: None,
) -> ImportResult:
    """Import `folder` for the case (see the module docstring). Raises ImportError_ when
    it cannot start; a file that fails its checks is refused and named in the result."""
    manifest_path = folder / MANIFEST_NAME
    manifest, on_disk = await asyncio.to_thread(_scan, folder)
    now = utcnow()
    async with service.db.session() as session:
        case = await load_case(session, case_number, for_update=True)
        if case.status not in FETCHING:
            raise ImportError_(
                f"case {case.number} is {case.status}: footage is added only to an approved case"
            )
        ranges = [
            (start, end)
            for start, end in (
                await session.execute(
                    select(CaseRangeRow.start, CaseRangeRow.end).where(
                        CaseRangeRow.case_id == case.id, CaseRangeRow.unit_id == unit_id
                    )
                )
            ).all()
        ]
        if not ranges:
            raise ImportError_(f"case {case.number} asks for no footage from unit {unit_id}")
        for row in (
            await session.execute(
                select(RetrievalRow).where(
                    RetrievalRow.case_id == case.id, RetrievalRow.unit_id == unit_id
                )
            )
        ).scalars():
            if row.status == "requested" and row.received_bytes == 0:
                row.status, row.finished_at = "failed", now
                row.problem = "stood down: the footage was imported from the unit's export folder"
            elif row.status != "failed":
                raise ImportError_(
                    f"case {case.number} already has a retrieval from unit {unit_id} "
                    f"({row.upload_id}, {row.status})"
                )
        upload_id = f"import-{uuid.uuid4().hex}"
        session.add(
            RetrievalRow(
                case_id=case.id,
                unit_id=unit_id,
                upload_id=upload_id,
                requested_at=now,
                status="requested",
                received_bytes=0,
                source="import",
            )
        )
        await audit.record(
            session,
            actor=actor,
            action="evidence.import_started",
            subject=case_subject(case.number),
            details={"upload_id": upload_id, "unit_id": unit_id, "folder": str(folder)},
            at=now,
        )
        await session.commit()
        retrieval_id = await session.scalar(
            select(RetrievalRow.id).where(RetrievalRow.upload_id == upload_id)
        )
    assert retrieval_id is not None
    segments = manifest.segments()
    take: list[Path] = []
    skipped: list[str] = []
    for path in on_disk:
        listed = next((s for s in segments.values() if s.file_name == path.name), None)
        if listed is not None and not _overlaps(listed.started_at, listed.ended_at, ranges):
            skipped.append(path.name)  # staged for the export's range, not asked for here
        else:
            take.append(path)  # in range, or unlisted: the checks name it
    if not take:
        raise ImportError_(f"{folder} holds no segment files in the case's ranges on {unit_id}")
    files = [(MANIFEST_NAME, "manifest", manifest_path)] + [(p.name, "segment", p) for p in take]

    def digests() -> list[OfferedFile]:
        return [
            OfferedFile(name=name, role=role, size=size, sha256=sha)
            for name, role, path in files
            for size, sha in [file_sha256(path)]
        ]

    offered = await asyncio.to_thread(digests)
    await service.offer(unit_id, upload_id, UploadOffer(case_number=case_number, files=offered))
    where = await service.where(retrieval_id)
    for (name, _, path), f in zip(files, offered, strict=True):
        await service.take_local_file(where, name, path, f.size)
        on_file(name)
    state = await service.state(unit_id, upload_id)
    return ImportResult(upload_id, state, skipped)
