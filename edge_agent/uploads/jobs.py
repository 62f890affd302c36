"""Upload jobs, kept in the unit's state folder so an upload goes on after a reboot.

    <data_dir>/uploads/<upload_id>/job.json        what to send and how far it got
    <data_dir>/uploads/<upload_id>/manifest.json   the signed index manifest sent first
    <data_dir>/uploads/<upload_id>/sent            bytes put on the wire so far (data used)

`job.json` is replaced atomically and flushed to disk at each change of state. Where the
upload stands byte by byte is not kept here: the controller says (it holds what it
acknowledged), and the unit asks it after every interruption.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from edge_agent.errors import AgentError
from protocol.evidence_upload import OfferedFile, UploadOffer

__all__ = ["JobError", "JobFile", "JobStatus", "JobStore", "SentCounter", "UploadJob"]

log = logging.getLogger(__name__)

JobStatus = Literal["pending", "complete", "refused", "failed"]
_COUNTER = struct.Struct(">Q")


class JobError(AgentError):
    """An upload job that cannot be written or read."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JobFile(_Model):
    name: str
    role: Literal["segment", "manifest"]
    path: Path
    size: int
    sha256: str


class UploadJob(_Model):
    upload_id: str
    case_number: str
    command_id: str
    ranges: list[tuple[AwareDatetime, AwareDatetime]]
    created_at: AwareDatetime
    files: list[JobFile]
    status: JobStatus = "pending"
    problem: str | None = None
    finished_at: AwareDatetime | None = None

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def offer(self) -> UploadOffer:
        return UploadOffer(
            case_number=self.case_number,
            files=[
                OfferedFile(name=f.name, role=f.role, size=f.size, sha256=f.sha256)
                for f in self.files
            ],
        )

    def finished(self, status: JobStatus, problem: str | None, at: datetime) -> UploadJob:
        return self.model_copy(update={"status": status, "problem": problem, "finished_at": at})


def _write_durably(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class SentCounter:
    """Bytes of an upload put on the wire, re-sent ones included: what it cost on the
    data plan. Written at every piece without a flush (a count, not evidence)."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        raw = os.pread(self._fd, _COUNTER.size, 0)
        self.value = _COUNTER.unpack(raw)[0] if len(raw) == _COUNTER.size else 0

    def add(self, size: int) -> None:
        self.value += size
        os.pwrite(self._fd, _COUNTER.pack(self.value), 0)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


class JobStore:
    """The upload jobs under one folder. Synchronous: call from a thread."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self, upload_id: str) -> Path:
        return self.root / upload_id

    def save(self, job: UploadJob) -> None:
        folder = self.folder(job.upload_id)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            _write_durably(folder / "job.json", job.model_dump_json(indent=2).encode())
        except OSError as exc:
            raise JobError(f"upload {job.upload_id}: cannot save the job: {exc}") from exc

    def write_manifest(self, upload_id: str, data: bytes) -> Path:
        folder = self.folder(upload_id)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            _write_durably(folder / "manifest.json", data)
        except OSError as exc:
            raise JobError(f"upload {upload_id}: cannot keep its manifest: {exc}") from exc
        return folder / "manifest.json"

    def get(self, upload_id: str) -> UploadJob | None:
        path = self.folder(upload_id) / "job.json"
        try:
            return UploadJob.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValidationError) as exc:
            raise JobError(f"upload {upload_id}: unreadable job: {exc}") from exc

    def all(self) -> list[UploadJob]:
        """Every job that can be read, oldest first (an unreadable one is logged)."""
        jobs = []
        if not self.root.is_dir():
            return []
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir()):
            try:
                job = self.get(folder.name)
            except JobError as exc:
                log.error("%s", exc)
                continue
            if job is not None:
                jobs.append(job)
        return sorted(jobs, key=lambda j: j.created_at)

    def counter(self, upload_id: str) -> SentCounter:
        folder = self.folder(upload_id)
        folder.mkdir(parents=True, exist_ok=True)
        return SentCounter(folder / "sent")
