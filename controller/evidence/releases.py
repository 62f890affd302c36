"""Releasing a case's footage: a data controller unlocks the evidence key for this one job,
the controller makes the exhibit (`controller.evidence.exhibits`) in the background with
its progress shown, then records the exhibit and the release, audits both and moves the
case to released. Reviewers (data controllers and managers) then watch or download the
exhibit; every view, playback and download goes into the review log.

The passphrase arrives in the request, opens the key file in memory and is dropped; it is
never logged, stored or audited. The unlocked key lives in the job until the exhibit is
written. A wrong passphrase is refused with a sentence and audited (who tried, for which
case). One exhibit is made per case at a time.

The JSON API (`controller.api.release_routes`) and the pages
(`controller.pages.release_pages`) both call `ReleaseService` and read exhibits and their
releases through `case_exhibits` and `exhibit_release`. Who may do what is the permission
table's word (`controller.accounts.permissions`): `RELEASE_FOOTAGE` to make and release an
exhibit, `VIEW_FOOTAGE` to watch or download one.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from controller import audit
from controller.accounts.permissions import Permission
from controller.config import ControllerSettings
from controller.evidence import store_layout
from controller.evidence.case_errors import CaseError, CaseRefused
from controller.evidence.cases import Actor, load_case, mark_released, require_permission
from controller.evidence.exhibits import (
    CaseSummary,
    Exhibit,
    ExhibitError,
    ReleaseRecord,
    UnitEvidence,
    make_exhibit,
    zip_exhibit,
)
from controller.evidence.holds import case_subject
from controller.fleet.unit_keys import public_key
from controller.store.base import Database, utcnow
from controller.store.evidence import CaseRangeRow, CaseRow, ExhibitRow, ReleaseRow
from controller.store.fleet import Unit
from controller.store.reports import CheckpointRecord
from protocol.evidence_keys import EvidenceKeyError, EvidencePrivateKey
from protocol.segment.manifest import Checkpoint, SegmentManifest
from protocol.signing import load_private_key

__all__ = [
    "METHODS",
    "RELEASABLE",
    "EvidenceKeyUnavailable",
    "ReleaseJob",
    "ReleaseRequest",
    "ReleaseService",
    "UnknownExhibit",
    "UnknownJob",
    "WrongPassphrase",
    "case_exhibits",
    "exhibit_number_part",
    "exhibit_release",
]

log = logging.getLogger(__name__)

#: Case states an exhibit may be made in.
RELEASABLE = ("retrieved", "released")
#: The usual ways an exhibit leaves the control room (the form offers these; the API
#: takes any short phrase).
METHODS = ("encrypted USB", "secure download", "encrypted disc", "in person")
#: How long a finished job's outcome stays to be read.
JOB_KEPT = timedelta(days=1)
#: Checkpoint states the controller checked and found good when they were reported.
_GOOD_CHECKPOINTS = ("verified", "gap")


class EvidenceKeyUnavailable(CaseError):
    """The controller has no evidence key file or signing key configured or readable (the
    message names files: a person is told only that the controller failed)."""

    status = 503


class WrongPassphrase(CaseError):
    status = 422

    def __init__(self) -> None:
        super().__init__("the passphrase does not unlock the evidence key")


class UnknownExhibit(CaseError):
    status = 404

    def __init__(self, number: str) -> None:
        super().__init__(f"there is no exhibit {number!r}")
        self.number = number


class UnknownJob(CaseError):
    status = 404

    def __init__(self, job_id: str) -> None:
        super().__init__(f"there is no exhibit job {job_id!r} running or finished here")
        self.job_id = job_id


class ReleaseRequest(BaseModel):
    """The release record a data controller enters, with the passphrase for this job."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    recipient_name: str = Field(min_length=1, max_length=200, description="Who receives it")
    recipient_org: str = Field("", max_length=200, description="Their organisation")
    reason: str = Field(min_length=3, max_length=4000, description="Why it is released")
    lawful_basis: str = Field(
        min_length=3, max_length=2000, description="The law that allows the disclosure"
    )
    reference: str = Field("", max_length=200, description="Their reference, e.g. police URN")
    method: str = Field(min_length=2, max_length=100, description="How it is handed over")
    notes: str = Field("", max_length=2000, description="Anything else for the release log")
    passphrase: SecretStr = Field(
        min_length=1, max_length=1024, description="Unlocks the evidence key for this job only"
    )


@dataclass
class ReleaseJob:
    """One exhibit being made; polled for its progress."""

    id: str
    case_number: str
    exhibit_number: str
    started_by: str
    started_at: datetime
    state: Literal["running", "done", "failed"] = "running"
    done: int = 0
    total: int = 0
    stage: str = "checking the retrieved footage"
    problem: str | None = None
    finished_at: datetime | None = None

    @property
    def percent(self) -> int:
        if self.state == "done":
            return 100
        return int(100 * self.done / self.total) if self.total else 0

    @property
    def exhibit_part(self) -> str:
        return exhibit_number_part(self.exhibit_number)

    def as_dict(self) -> dict[str, Any]:
        return {
            "job": self.id,
            "case": self.case_number,
            "exhibit": self.exhibit_number,
            "state": self.state,
            "done": self.done,
            "total": self.total,
            "percent": self.percent,
            "stage": self.stage,
            "problem": self.problem,
            "started_by": self.started_by,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


@dataclass
class _Inputs:
    case: CaseSummary
    case_id: int
    units: list[UnitEvidence]
    out_dir: Path
    zip_path: Path
    key: EvidencePrivateKey
    signer: Ed25519PrivateKey
    release: ReleaseRecord
    request: ReleaseRequest
    actor: str


def exhibit_number_part(number: str) -> str:
    """`C-2026-0007/EX3` -> `EX3` (the exhibit's part of its URL)."""
    return number.rsplit("/", 1)[-1]


class ReleaseService:
    """Starts exhibit jobs, keeps their progress, and finds exhibits to serve."""

    def __init__(
        self,
        db: Database,
        settings: ControllerSettings,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.jobs: dict[str, ReleaseJob] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        # One start at a time: the check for a running job and the exhibit number taken
        # must not interleave with another request's.
        self._starting = asyncio.Lock()
        self._sweep_partials()

    # ------------------------------------------------------------------ where things are

    @property
    def store(self) -> Path:
        return Path(self.settings.evidence.store_dir)

    def retrieved_dir(self, number: str, unit_id: str) -> Path:
        return store_layout.case_unit_dir(self.store, number, unit_id)

    def exhibit_dir(self, number: str) -> Path:
        return store_layout.exhibit_dir(self.store, number)

    def _sweep_partials(self) -> None:
        """Half-made exhibits left by a stopped controller hold decrypted footage: gone."""
        for partial in (self.store / "exhibits").glob("*.partial"):
            log.warning("removing an unfinished exhibit folder %s", partial.name)
            if partial.is_dir():
                shutil.rmtree(partial, ignore_errors=True)
            else:
                partial.unlink(missing_ok=True)

    def _key_file(self) -> Path:
        configured = self.settings.evidence.private_key_file
        if configured is not None:
            return Path(configured)
        if self.settings.fleet_dir is not None:
            return Path(self.settings.fleet_dir) / "evidence" / "evidence-private.json"
        raise EvidenceKeyUnavailable(
            "no evidence key file is configured ([evidence] private_key_file or fleet_dir)"
        )

    def _signer(self) -> Ed25519PrivateKey:
        path = self.settings.signing_key_file
        if path is None:
            raise EvidenceKeyUnavailable(
                "the controller has no signing key (signing_key_file) to sign exhibits with"
            )
        try:
            return load_private_key(Path(path).read_bytes())
        except (OSError, ValueError) as exc:
            raise EvidenceKeyUnavailable(f"the signing key {path} cannot be read") from exc

    # ------------------------------------------------------------------- the release

    async def start(self, actor: Actor, number: str, req: ReleaseRequest) -> ReleaseJob:
        """Check the request, unlock the key, and start making the exhibit."""
        require_permission(actor, Permission.RELEASE_FOOTAGE, f"release footage of case {number}")
        async with self._starting:
            self._forget_old_jobs()
            return await self._start(actor.username, number, req)

    def _forget_old_jobs(self) -> None:
        cutoff = self.clock() - JOB_KEPT
        for job_id, job in list(self.jobs.items()):
            if job.finished_at is not None and job.finished_at < cutoff:
                del self.jobs[job_id]

    async def _start(self, username: str, number: str, req: ReleaseRequest) -> ReleaseJob:
        running = [
            j for j in self.jobs.values() if j.case_number == number and j.state == "running"
        ]
        if running:
            raise CaseRefused(number, "busy", "released now",
                              f"exhibit {running[0].exhibit_number} is being made")  # fmt: skip
        async with self.db.session() as session:
            row = await load_case(session, number)
            if row.status not in RELEASABLE:
                why = "only a case whose footage was retrieved can be released"
                raise CaseRefused(number, row.status, "released", why)
            units = await self._units(session, row)
            exhibit_number = await self._next_exhibit_number(session, row)
        signer = self._signer()
        key = await self._unlock(username, row, req)
        now = self.clock()
        release = ReleaseRecord(
            exhibit_number=exhibit_number,
            released_at=now,
            released_by=username,
            recipient_name=req.recipient_name,
            recipient_org=req.recipient_org,
            reason=req.reason,
            lawful_basis=req.lawful_basis,
            reference=req.reference,
            method=req.method,
        )
        out_dir = self.exhibit_dir(exhibit_number)
        inputs = _Inputs(
            case=CaseSummary(
                number=row.number, case_type=row.case_type, external_ref=row.external_ref
            ),
            case_id=row.id,
            units=units,
            out_dir=out_dir,
            zip_path=out_dir.with_name(out_dir.name + ".zip"),
            key=key,
            signer=signer,
            release=release,
            request=req,
            actor=username,
        )
        job = ReleaseJob(
            id=uuid.uuid4().hex[:16],
            case_number=number,
            exhibit_number=exhibit_number,
            started_by=username,
            started_at=now,
        )
        self.jobs[job.id] = job
        self._tasks[job.id] = asyncio.create_task(self._run(job, inputs), name=f"exhibit-{job.id}")
        log.info(
            "case=%s exhibit=%s job=%s started by=%s", number, exhibit_number, job.id, username
        )
        return job

    async def _units(self, session: AsyncSession, row: CaseRow) -> list[UnitEvidence]:
        spans = list(
            (
                await session.execute(
                    select(CaseRangeRow)
                    .where(CaseRangeRow.case_id == row.id)
                    .order_by(CaseRangeRow.unit_id, CaseRangeRow.start)
                )
            ).scalars()
        )
        by_unit: dict[str, list[tuple[datetime, datetime]]] = {}
        for span in spans:
            by_unit.setdefault(span.unit_id, []).append((span.start, span.end))
        units = []
        for unit_id, ranges in by_unit.items():
            unit = await session.get(Unit, unit_id)
            if unit is None or unit.signing_public_key is None:
                raise ExhibitError(
                    f"unit {unit_id} has no signing key on record: its footage cannot be checked"
                )
            folder = self.retrieved_dir(row.number, unit_id)
            if not (folder / "manifest.json").is_file():
                raise ExhibitError(f"the footage of unit {unit_id} has not been retrieved")
            units.append(
                UnitEvidence(
                    unit_id=unit_id,
                    folder=folder,
                    signing_key=public_key(unit.signing_public_key),
                    ranges=tuple(ranges),
                    reported=tuple(await self._reported(session, unit_id, folder)),
                )
            )
        if not units:
            raise ExhibitError(f"case {row.number} has no unit ranges")
        return units

    @staticmethod
    async def _reported(session: AsyncSession, unit_id: str, folder: Path) -> list[Checkpoint]:
        """The checkpoints the unit reported over MQTT within the run of its chain that the
        retrieved manifest carries."""
        try:
            manifest = SegmentManifest.from_json((folder / "manifest.json").read_bytes())
        except Exception as exc:  # checked in full, with every problem named, by the job
            log.info("unit=%s manifest unreadable before the exhibit: %s", unit_id, exc)
            return []
        if not manifest.entries:
            return []
        first, last = manifest.entries[0].seq, manifest.entries[-1].seq
        rows = (
            await session.execute(
                select(CheckpointRecord)
                .where(
                    CheckpointRecord.unit_id == unit_id,
                    CheckpointRecord.status.in_(_GOOD_CHECKPOINTS),
                    CheckpointRecord.count >= first,
                    CheckpointRecord.count <= last,
                )
                .order_by(CheckpointRecord.count, CheckpointRecord.id)
            )
        ).scalars()
        return [
            Checkpoint(
                unit_id=r.unit_id,
                count=r.count,
                head=r.head,
                signed_at=r.signed_at,
                key_id=r.key_id,
                signature=r.signature,
            )
            for r in rows
        ]

    async def _next_exhibit_number(self, session: AsyncSession, row: CaseRow) -> str:
        made = await session.scalar(select(func.count()).where(ExhibitRow.case_id == row.id))
        n = int(made or 0) + 1
        taken = {j.exhibit_number for j in self.jobs.values()}
        while f"{row.number}/EX{n}" in taken or self.exhibit_dir(f"{row.number}/EX{n}").exists():
            n += 1
        return f"{row.number}/EX{n}"

    async def _unlock(self, username: str, row: CaseRow, req: ReleaseRequest) -> EvidencePrivateKey:
        path = self._key_file()
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            raise EvidenceKeyUnavailable(f"the evidence key file {path} cannot be read") from exc
        try:
            return await asyncio.to_thread(
                EvidencePrivateKey.from_encrypted_json, data, req.passphrase.get_secret_value()
            )
        except EvidenceKeyError as exc:
            async with self.db.session() as session:
                await audit.record(session, actor=username, action="evidence_key.refused",
                                   subject=case_subject(row.number),
                                   details={"reason": "wrong passphrase"})  # fmt: skip
                await session.commit()
            log.warning("case=%s evidence key not unlocked by=%s", row.number, username)
            if "passphrase" in str(exc):
                raise WrongPassphrase() from None
            raise EvidenceKeyUnavailable(f"the evidence key file {path}: {exc}") from None

    async def _run(self, job: ReleaseJob, inputs: _Inputs) -> None:
        def progress(done: int, total: int, stage: str) -> None:
            job.done, job.total, job.stage = done, total, stage

        try:
            exhibit = await asyncio.to_thread(
                make_exhibit,
                out_dir=inputs.out_dir,
                case=inputs.case,
                release=inputs.release,
                units=inputs.units,
                evidence_key=inputs.key,
                signing_key=inputs.signer,
                made_at=self.clock(),
                on_progress=progress,
            )
            del inputs.key  # the unlocked key is needed no longer
            job.stage = "packing the download"
            await asyncio.to_thread(zip_exhibit, exhibit.path, inputs.zip_path)
            job.stage = "recording the release"
            await self._record(job, inputs, exhibit)
        except Exception as exc:
            shutil.rmtree(inputs.out_dir, ignore_errors=True)
            inputs.zip_path.unlink(missing_ok=True)
            job.state, job.problem = "failed", str(exc)
            job.finished_at = self.clock()
            log.warning("case=%s exhibit=%s failed: %s", job.case_number, job.exhibit_number, exc)
            if not isinstance(exc, ExhibitError):
                log.exception("exhibit job %s failed unexpectedly", job.id)
            return
        finally:
            self._tasks.pop(job.id, None)
        job.state, job.stage, job.finished_at = "done", "ready", self.clock()
        log.info("case=%s exhibit=%s made", job.case_number, job.exhibit_number)

    async def _record(self, job: ReleaseJob, inputs: _Inputs, exhibit: Exhibit) -> None:
        release, req = inputs.release, inputs.request
        async with self.db.session() as session:
            row = ExhibitRow(
                case_id=inputs.case_id,
                number=exhibit.number,
                created_at=release.released_at,
                created_by=inputs.actor,
                path=str(exhibit.path),
                manifest_sha256=exhibit.manifest_sha256,
                derived_from_id=None,
                kind="master",
            )
            session.add(row)
            await session.flush()
            session.add(
                ReleaseRow(
                    case_id=inputs.case_id,
                    exhibit_id=row.id,
                    released_at=release.released_at,
                    released_by=inputs.actor,
                    recipient_name=release.recipient_name,
                    recipient_org=release.recipient_org,
                    reason=release.reason,
                    lawful_basis=release.lawful_basis,
                    reference=release.reference,
                    method=release.method,
                    notes=req.notes,
                )
            )
            await audit.record(
                session,
                actor=inputs.actor,
                action="exhibit.made",
                subject=case_subject(job.case_number),
                details={
                    "exhibit": exhibit.number,
                    "manifest_sha256": exhibit.manifest_sha256,
                    "footage": list(exhibit.footage),
                    "bytes": exhibit.total_bytes,
                    "units": [u.unit_id for u in inputs.units],
                },
                at=release.released_at,
            )
            await mark_released(
                session,
                inputs.case_id,
                actor=inputs.actor,
                at=release.released_at,
                exhibit=exhibit.number,
                recipient=release.recipient_name,
                recipient_org=release.recipient_org,
                method=release.method,
                reference=release.reference,
            )
            await session.commit()

    # -------------------------------------------------------------------- looking up

    def job(self, number: str, job_id: str) -> ReleaseJob:
        job = self.jobs.get(job_id)
        if job is None or job.case_number != number:
            raise UnknownJob(job_id)
        return job

    async def wait(self, job_id: str) -> None:
        """Until the job's task has ended (tests and shutdown)."""
        task = self._tasks.get(job_id)
        if task is not None:
            await asyncio.wait({task})

    @staticmethod
    async def exhibit(session: AsyncSession, number: str, part: str) -> tuple[CaseRow, ExhibitRow]:
        """The case and its exhibit `part` ("EX1"); `UnknownCase`/`UnknownExhibit`."""
        case = await load_case(session, number)
        full = f"{number}/{part}"
        row = await session.scalar(
            select(ExhibitRow).where(ExhibitRow.case_id == case.id, ExhibitRow.number == full)
        )
        if row is None:
            raise UnknownExhibit(full)
        return case, row


async def case_exhibits(
    session: AsyncSession, number: str
) -> tuple[CaseRow, list[tuple[ExhibitRow, ReleaseRow | None]]]:
    """The case (`UnknownCase` when none) and its exhibits in the order they were made,
    each with its release (None for an exhibit not released)."""
    case = await load_case(session, number)
    rows = await session.execute(
        select(ExhibitRow, ReleaseRow)
        .outerjoin(ReleaseRow, ReleaseRow.exhibit_id == ExhibitRow.id)
        .where(ExhibitRow.case_id == case.id)
        .order_by(ExhibitRow.id)
    )
    return case, [(exhibit, release) for exhibit, release in rows.all()]


async def exhibit_release(session: AsyncSession, exhibit: ExhibitRow) -> ReleaseRow | None:
    """The release of `exhibit`, None when it was not released."""
    return await session.scalar(select(ReleaseRow).where(ReleaseRow.exhibit_id == exhibit.id))
