"""Why the controller's evidence endpoint refuses a request from a unit, each with the HTTP
status it answers with (`protocol.evidence_upload` describes them to the unit).

ControllerError
└── UploadRefused (400)        malformed: bad range, size, name or offer
    ├── UnknownUpload (404)    the controller asked for no upload with this id
    ├── NotYourUpload (403)    the upload was asked of another unit
    ├── UploadOver (410)       the retrieval failed or was stopped: nothing more is taken
    ├── UploadConflict (409)   a chunk at the wrong offset, a file already finished, an
    │                          offer that differs from the one registered; carries the state
    ├── ChunkTooLarge (413)
    └── UploadBusy (503)       another request is writing the same file: try again

`BodyCut` is not a refusal: the connection ended, or went silent, part way through a
chunk. What arrived before is kept.
"""

from __future__ import annotations

from typing import ClassVar

from controller.errors import ControllerError
from protocol.evidence_upload import UploadState

__all__ = [
    "BodyCut",
    "ChunkTooLarge",
    "NotYourUpload",
    "UnknownUpload",
    "UploadBusy",
    "UploadConflict",
    "UploadOver",
    "UploadRefused",
]


class UploadRefused(ControllerError):
    status: ClassVar[int] = 400

    def __init__(self, reason: str, *, state: UploadState | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.state = state


class UnknownUpload(UploadRefused):
    status = 404


class NotYourUpload(UploadRefused):
    status = 403


class UploadOver(UploadRefused):
    status = 410


class UploadConflict(UploadRefused):
    status = 409


class ChunkTooLarge(UploadRefused):
    status = 413


class UploadBusy(UploadRefused):
    status = 503


class BodyCut(Exception):
    """The request body stopped before its end (connection lost or silent)."""
