"""The recorder's settings and the values it reports: `RecorderConfig`, what it needs from
the segment index (`SegmentIndexLike`), its state and why it stopped (`RecorderStatus`);
and `Halt`, raised in the capture thread when recording must stop."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from edge_agent.recorder.segment_file import EncoderSettings
from protocol.faults import FaultCode
from protocol.segment.format import SegmentSummaryInfo

__all__ = [
    "Halt",
    "RecorderConfig",
    "RecorderState",
    "RecorderStatus",
    "SegmentIndexLike",
    "StopReason",
]


class RecorderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    unit_id: str = Field(description="Written into every segment header")
    data_dir: Path = Field(description="Where segment files live")
    segment_seconds: float = Field(60.0, gt=0, le=3600, description="Cut at the next keyframe")
    fragment_seconds: float = Field(1.0, gt=0, le=10, description="Longest MP4 fragment")
    chunk_size: int = Field(256 * 1024, ge=4096, description="Encrypted chunk size")
    space_check_seconds: float = Field(5.0, ge=0, description="Free-space check interval")
    encoder: EncoderSettings = Field(default_factory=EncoderSettings)


class SegmentIndexLike(Protocol):
    """What the recorder needs from `SegmentIndex`."""

    def add(self, summary: SegmentSummaryInfo) -> str: ...

    def get(self, segment_id: str) -> Any: ...

    def verify(self, files_dir: Path) -> Any: ...


class RecorderState(StrEnum):
    STARTING = "starting"  # running, waiting for the first keyframe
    RECORDING = "recording"
    STOPPED = "stopped"


class StopReason(StrEnum):
    NOT_STARTED = "not_started"
    REQUESTED = "requested"
    NO_SIGNAL = "no_signal"  # resumes by itself when the camera comes back
    STORAGE_FULL = "storage_full"  # held footage fills the disk
    STORAGE_FAILED = "storage_failed"  # the disk cannot be written


@dataclass(frozen=True)
class RecorderStatus:
    state: RecorderState
    reason: StopReason | None
    segment_id: str | None  # the open segment
    segments_sealed: int  # since this recorder was made
    since: datetime


class Halt(Exception):
    """Recording must stop (the disk is full or cannot be written): raised in the capture
    thread, turned by the recorder into a storage fault and a stop."""

    def __init__(self, reason: StopReason, fault: FaultCode, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.fault, self.detail = reason, fault, detail

    @classmethod
    def storage_full(cls) -> Halt:
        return cls(StopReason.STORAGE_FULL, FaultCode.STORAGE_LOW, "held footage fills the disk")
