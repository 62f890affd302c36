"""Errors of the recorder: segments, the segment index, storage.

AgentError
└── RecorderError
    ├── StorageError          the segment directory cannot be written (`.path`)
    └── SegmentIndexError     the index database cannot be used (`.path`)
        ├── UnknownSegment    no such segment in the index (`.segment_id`)
        ├── DuplicateSegment  a segment id added twice (`.segment_id`)
        └── CheckpointError   a checkpoint cannot be signed (no unit signing key)
"""

from __future__ import annotations

from pathlib import Path

from edge_agent.errors import AgentError

__all__ = [
    "CheckpointError",
    "DuplicateSegment",
    "RecorderError",
    "SegmentIndexError",
    "StorageError",
    "UnknownSegment",
]


class RecorderError(AgentError):
    """Root of the recorder's errors."""


class StorageError(RecorderError):
    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"storage {path}: {reason}")
        self.path = Path(path)
        self.reason = reason


class SegmentIndexError(RecorderError):
    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"segment index {path}: {reason}")
        self.path = Path(path)
        self.reason = reason


class UnknownSegment(SegmentIndexError):
    def __init__(self, path: Path | str, segment_id: str) -> None:
        super().__init__(path, f"no segment {segment_id!r}")
        self.segment_id = segment_id


class DuplicateSegment(SegmentIndexError):
    def __init__(self, path: Path | str, segment_id: str) -> None:
        super().__init__(path, f"segment {segment_id!r} is already indexed")
        self.segment_id = segment_id


class CheckpointError(SegmentIndexError):
    """A checkpoint cannot be made (no unit signing key was given)."""
