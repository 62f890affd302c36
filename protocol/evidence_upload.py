"""The evidence upload: how a unit sends a case's encrypted segments and its signed index
manifest to the controller over HTTPS, resumably (in the manner of tus).

Sent by the unit only after a signed `upload_evidence` command, to the controller's
evidence endpoint named in the unit's own config; both ends authenticate with fleet
certificates (the unit's CN is its unit id). All paths are under the endpoint's URL:

    POST /uploads/{upload_id}              body UploadOffer   -> UploadState
    GET  /uploads/{upload_id}                                  -> UploadState
    PUT  /uploads/{upload_id}/files/{name} Content-Range: bytes a-b/size, body the bytes
                                                               -> UploadState

The offer names every file (the manifest first) with its size and SHA-256. The state
says, for each file, how many bytes the controller holds durably (written and flushed to
its disk): the unit sends the rest from there, in chunks. A chunk that does not start at
that offset is refused with 409 and the state, so a unit never sends twice what was
acknowledged. A connection cut part way through a chunk keeps the bytes that arrived,
once flushed: the next state says so. Each file is checked as soon as its last byte is
stored; a refused file stays refused, named with the reason, in the state.

Errors come back as JSON `{"error": "..."}` with 400 (malformed), 403 (not this unit's
upload), 404 (no such upload), 409 (offset or offer mismatch), 410 (upload over),
413 (chunk too large), 503 (busy: try again).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "MANIFEST_NAME",
    "MAX_CHUNK_BYTES",
    "ContentRange",
    "FileState",
    "OfferedFile",
    "UploadError",
    "UploadOffer",
    "UploadState",
    "file_path",
    "upload_path",
]

#: The name the unit's signed index manifest travels under.
MANIFEST_NAME = "manifest.json"
DEFAULT_CHUNK_BYTES = 1024 * 1024
MAX_CHUNK_BYTES = 16 * 1024 * 1024
#: File names in an upload: a segment's own file name or the manifest; no paths.
FILE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,200}$"
_FILE_NAME = re.compile(FILE_NAME)
_RANGE = re.compile(r"^bytes (\d{1,15})-(\d{1,15})/(\d{1,15})$")

FileRole = Literal["segment", "manifest"]
FileStatus = Literal["pending", "receiving", "verified", "refused"]
UploadStatus = Literal["requested", "uploading", "complete", "refused", "failed"]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OfferedFile(_Model):
    """One file the unit will send, as it stands on the unit."""

    name: str = Field(pattern=FILE_NAME, description="Segment file name, or manifest.json")
    role: FileRole
    size: int = Field(ge=0, le=2**40)
    sha256: Sha256


class UploadOffer(_Model):
    """Sent by the unit: the files of its upload, manifest first."""

    case_number: str = Field(min_length=1, max_length=40)
    files: list[OfferedFile] = Field(min_length=2, max_length=100_000)

    @model_validator(mode="after")
    def _manifest_first(self) -> UploadOffer:
        names = [f.name for f in self.files]
        if len(set(names)) != len(names):
            raise ValueError("a file is offered twice")
        first = self.files[0]
        if first.role != "manifest" or first.name != MANIFEST_NAME:
            raise ValueError(f"the first file must be the manifest, {MANIFEST_NAME}")
        if any(f.role == "manifest" for f in self.files[1:]):
            raise ValueError("only one manifest")
        return self

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


class FileState(_Model):
    """Sent by the controller: what it holds of one file."""

    name: str
    role: FileRole
    size: int
    received: int = Field(ge=0, description="Bytes written and flushed to the controller's disk")
    status: FileStatus
    problem: str | None = None


class UploadState(_Model):
    """Sent by the controller: the upload as it stands."""

    upload_id: str
    status: UploadStatus
    received_bytes: int
    total_bytes: int | None
    files: list[FileState]
    problem: str | None = None

    def file(self, name: str) -> FileState | None:
        return next((f for f in self.files if f.name == name), None)


class UploadError(_Model):
    error: str


class ContentRange(_Model):
    """`Content-Range: bytes first-last/size` of one chunk (last inclusive, RFC 9110)."""

    first: int = Field(ge=0)
    last: int = Field(ge=0)
    size: int = Field(ge=0)

    @model_validator(mode="after")
    def _inside(self) -> ContentRange:
        if self.last < self.first or self.last >= self.size:
            raise ValueError("range outside the file")
        return self

    @property
    def length(self) -> int:
        return self.last - self.first + 1

    def header(self) -> str:
        return f"bytes {self.first}-{self.last}/{self.size}"

    @classmethod
    def parse(cls, value: str) -> ContentRange:
        """Raise ValueError naming what is wrong."""
        match = _RANGE.match(value.strip())
        if match is None:
            raise ValueError(f"Content-Range must look like 'bytes 0-1023/4096', not {value!r}")
        first, last, size = (int(g) for g in match.groups())
        return cls(first=first, last=last, size=size)


def upload_path(upload_id: str) -> str:
    return f"/uploads/{upload_id}"


def file_path(upload_id: str, name: str) -> str:
    if _FILE_NAME.match(name) is None:
        raise ValueError(f"not an upload file name: {name!r}")
    return f"/uploads/{upload_id}/files/{name}"
