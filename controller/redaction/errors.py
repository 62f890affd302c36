"""Errors of redaction, under the controller's root.

ControllerError
└── RedactionError               (each class's `status` is its HTTP status)
    ├── DetectorUnavailable      the face detector's packages are not installed (500)
    ├── VideoUnreadable          the clip cannot be opened or decoded (422)
    ├── PlanMismatch             a plan made for another clip, or a clip that changed (409)
    ├── UnknownTrack             no box with that id in the plan (404)
    ├── EditRefused              an edit the plan cannot take; the message says why (409)
    ├── CopyExists               a file is already where the copy would go (409)
    ├── MasterChanged            the master's SHA-256 moved while redacting (500)
    └── JobCancelled             a redaction job stopped on request (409)
"""

from __future__ import annotations

from pathlib import Path

from controller.errors import ControllerError

__all__ = [
    "CopyExists",
    "DetectorUnavailable",
    "EditRefused",
    "JobCancelled",
    "MasterChanged",
    "PlanMismatch",
    "RedactionError",
    "UnknownTrack",
    "VideoUnreadable",
]


class RedactionError(ControllerError):
    """Root of redaction's errors."""

    status = 409


class DetectorUnavailable(RedactionError):
    status = 500

    def __init__(self, reason: str) -> None:
        super().__init__(f"the face detector is not available: {reason}")
        self.reason = reason


class VideoUnreadable(RedactionError):
    status = 422

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path.name}: {reason}")
        self.path = path
        self.reason = reason


class PlanMismatch(RedactionError):
    status = 409

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"the redaction plan does not fit {path.name}: {reason}")
        self.path = path
        self.reason = reason


class UnknownTrack(RedactionError):
    status = 404

    def __init__(self, track_id: str) -> None:
        super().__init__(f"no box {track_id!r} in the redaction plan")
        self.track_id = track_id


class EditRefused(RedactionError):
    status = 409

    def __init__(self, track_id: str | None, reason: str) -> None:
        super().__init__(reason if track_id is None else f"box {track_id}: {reason}")
        self.track_id = track_id
        self.reason = reason


class CopyExists(RedactionError):
    """A derived copy is never written over another file: each copy is an exhibit of its
    own, kept as made."""

    status = 409

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path.name} already exists: a redacted copy is never overwritten")
        self.path = path


class MasterChanged(RedactionError):
    """The master exhibit's bytes are not what they were when redaction started. The
    master is only ever read, so this means something else wrote to it: the derived copy
    is discarded and the master must be checked against its manifest."""

    status = 500

    def __init__(self, path: Path, before: str, after: str) -> None:
        super().__init__(f"{path.name} changed while it was redacted: {before} -> {after}")
        self.path = path
        self.before = before
        self.after = after


class JobCancelled(RedactionError):
    status = 409

    def __init__(self, job_name: str) -> None:
        super().__init__(f"{job_name} was cancelled")
        self.job_name = job_name
