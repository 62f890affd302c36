"""Retention: footage older than the retention period (31 days by default) is deleted
automatically; when free space falls under the floor, the oldest unheld footage goes first.
Footage under an evidential hold is never deleted, by age or for space: when held footage
alone fills the disk the sweep reports the storage as full, and the recorder stops (and
raises a fault) rather than delete evidence.

Each deletion is written to the segment index (`mark_deleted`) before the file goes, so a
crash between the two leaves a file the index already calls deleted, which the index's
start-up `verify` removes; never an indexed segment whose file has silently vanished.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from edge_agent.recorder.errors import RecorderError
from edge_agent.recorder.holds import Hold, HoldStore
from protocol.segment.format import segment_file_name

__all__ = [
    "DiskUsage",
    "IndexedSegment",
    "Retention",
    "RetentionError",
    "RetentionIndex",
    "RetentionPolicy",
    "SweepReport",
    "retention_loop",
]

log = logging.getLogger(__name__)

REASON_AGE = "retention"
REASON_SPACE = "disk_pressure"


class RetentionError(RecorderError):
    """The data directory cannot be measured or a segment cannot be deleted."""


class RetentionPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_age: timedelta = Field(timedelta(days=31), gt=timedelta(0), description="Keep for")
    min_free_bytes: int = Field(512 * 1024 * 1024, ge=0, description="Free-space floor")


class IndexedSegment(Protocol):
    @property
    def segment_id(self) -> str: ...

    @property
    def started_at(self) -> datetime: ...

    @property
    def ended_at(self) -> datetime: ...


class RetentionIndex(Protocol):
    """What retention needs from the segment index (`SegmentIndex`)."""

    def entries(
        self,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        include_deleted: bool = True,
    ) -> Sequence[IndexedSegment]: ...

    def mark_deleted(self, segment_id: str, reason: str) -> Any: ...


@dataclass(frozen=True)
class DiskUsage:
    total: int
    free: int


def _disk_usage(path: Path) -> DiskUsage:
    usage = shutil.disk_usage(path)
    return DiskUsage(usage.total, usage.free)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class SweepReport:
    deleted_for_age: list[str] = field(default_factory=list)
    deleted_for_space: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)  # old enough to go, kept for a hold
    free_bytes: int = 0
    floor_bytes: int = 0
    storage_full: bool = False  # under the floor with nothing left that may be deleted

    @property
    def deleted(self) -> list[str]:
        return self.deleted_for_age + self.deleted_for_space


class Retention:
    """Applies the policy to the segments in the index. Thread-safe (one sweep at a time)."""

    def __init__(
        self,
        *,
        index: RetentionIndex,
        holds: HoldStore,
        data_dir: Path,
        file_name: Callable[[str], str] = segment_file_name,
        policy: RetentionPolicy | None = None,
        clock: Callable[[], datetime] = _utcnow,
        disk_usage: Callable[[Path], DiskUsage] = _disk_usage,
    ) -> None:
        self.index = index
        self.holds = holds
        self.data_dir = data_dir
        self.policy = policy or RetentionPolicy()
        self._file_name = file_name
        self._clock = clock
        self._disk_usage = disk_usage
        self._lock = threading.Lock()

    def free_bytes(self) -> int:
        try:
            return self._disk_usage(self.data_dir).free
        except OSError as exc:
            raise RetentionError(f"cannot measure free space in {self.data_dir}: {exc}") from exc

    def has_room(self, extra: int = 0) -> bool:
        return self.free_bytes() - extra >= self.policy.min_free_bytes

    def sweep(self) -> SweepReport:
        """Delete footage past retention, then free space down to the floor."""
        with self._lock:
            report = SweepReport(floor_bytes=self.policy.min_free_bytes)
            cutoff = self._clock() - self.policy.max_age
            holds = self.holds.active()
            for seg in self._live(end=cutoff):
                if seg.ended_at > cutoff:
                    continue
                if _held(holds, seg):
                    report.held.append(seg.segment_id)
                    continue
                self._delete(seg.segment_id, REASON_AGE)
                report.deleted_for_age.append(seg.segment_id)
            self._make_room(0, report)
            return report

    def make_room(self, extra: int = 0) -> SweepReport:
        """Free space (oldest unheld first) so that `extra` more bytes still leave the
        floor; `storage_full` when held footage alone stands in the way. Cheap when there
        is room: one statvfs, no index query."""
        with self._lock:
            report = SweepReport(floor_bytes=self.policy.min_free_bytes)
            self._make_room(extra, report)
            return report

    def _live(self, *, end: datetime | None = None) -> list[IndexedSegment]:
        segments = list(self.index.entries(end=end, include_deleted=False))
        segments.sort(key=lambda seg: seg.started_at)
        return segments

    def _make_room(self, extra: int, report: SweepReport) -> None:
        floor = self.policy.min_free_bytes + extra
        free = self.free_bytes()
        if free >= floor:
            report.free_bytes = free
            return
        holds = self.holds.active()
        candidates = iter(self._live())
        while free < floor:
            seg = next(candidates, None)
            if seg is None:
                report.storage_full = True
                log.error(
                    "fault=storage_low free=%d floor=%d: held footage fills the disk", free, floor
                )
                break
            if _held(holds, seg):
                report.held.append(seg.segment_id)
                continue
            self._delete(seg.segment_id, REASON_SPACE)
            report.deleted_for_space.append(seg.segment_id)
            free = self.free_bytes()
        report.free_bytes = free

    def _delete(self, segment_id: str, reason: str) -> None:
        self.index.mark_deleted(segment_id, reason)
        path = self.data_dir / self._file_name(segment_id)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise RetentionError(f"cannot delete segment {segment_id}: {exc}") from exc
        log.info("segment=%s deleted reason=%s", segment_id, reason)


def _held(holds: Sequence[Hold], seg: IndexedSegment) -> bool:
    """Edges included: a segment touching a hold's range is kept."""
    return any(h.start <= seg.ended_at and h.end >= seg.started_at for h in holds)


async def retention_loop(
    retention: Retention,
    *,
    interval: float = 300.0,
    on_report: Callable[[SweepReport], None] | None = None,
) -> None:
    """Sweep every `interval` seconds until cancelled; run it as a named task. A failed
    sweep is logged and retried at the next interval, never ends the loop."""
    while True:
        try:
            report = await asyncio.to_thread(retention.sweep)
        except RecorderError as exc:
            log.error("fault=storage_failed retention sweep failed: %s", exc)
        else:
            if on_report is not None:
                on_report(report)
        await asyncio.sleep(interval)
