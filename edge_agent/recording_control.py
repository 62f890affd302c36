"""When the unit records: the recorder runs only while the gate is open, the power allows it
and the storage works, with the open deployment's privacy masks and retention.

`RecordingControl` owns the recorder: it starts and stops it as those conditions change
(at once when `wake` is set, else every half second), backs off for a retention interval
after a storage failure, and reports what the recorder does: recording started and
stopped, storage faults, and each sealed segment with a signed checkpoint of the index.
It also answers the self-tests' questions about recent progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any

from edge_agent.capture.base import CaptureSource, SourceState
from edge_agent.config import StorageConfig
from edge_agent.gate.gate import Gate
from edge_agent.health import Faults
from edge_agent.power import PowerMonitor
from edge_agent.recorder.index import IndexEntry, SegmentIndex
from edge_agent.recorder.recorder import (
    Recorder,
    RecorderConfig,
    RecorderState,
    RecorderStatus,
    StopReason,
)
from edge_agent.recorder.retention import Retention
from edge_agent.telemetry import Publish, Telemetry
from protocol.evidence_keys import EvidencePublicKey
from protocol.faults import FaultCode
from protocol.messages import RecordingStarted, RecordingStopped, SegmentSummary
from protocol.segment.format import SegmentSummaryInfo
from protocol.segment.manifest import ChainEntry, Checkpoint
from protocol.segment.reader import inspect_segment

__all__ = ["MAX_REPORTED_ENTRIES", "ChainReports", "RecordingControl"]

#: Chain entries one index report carries at most (a message stays well under the
#: protocol's payload limit). More pending, e.g. after retention removed hundreds of
#: segments at once: the oldest are left out and the controller records a gap.
MAX_REPORTED_ENTRIES = 200


class ChainReports:
    """What each index report carries: a new checkpoint and the chain entries since the
    last report (after a restart: since the index's latest checkpoint, the last one this
    unit reported), at most `MAX_REPORTED_ENTRIES`, the newest."""

    def __init__(self, index: SegmentIndex) -> None:
        self._index = index
        #: Chain entries already reported to the controller (None: not known yet).
        self.reported: int | None = None

    def next_run(self) -> tuple[Checkpoint, list[ChainEntry]]:
        if self.reported is None:
            previous = self._index.latest_checkpoint()
            self.reported = previous.count if previous else 0
        checkpoint = self._index.checkpoint()
        first = max(self.reported + 1, checkpoint.count - MAX_REPORTED_ENTRIES + 1)
        self.reported = checkpoint.count
        return checkpoint, self._index.chain(first, checkpoint.count)


class RecordingControl:
    """Starts and stops the recorder it owns; `run()` is the agent's recording-control task.
    The recorder's callbacks run their reports through `spawn` (the agent keeps the task)."""

    def __init__(
        self,
        *,
        source: CaptureSource,
        index: SegmentIndex,
        retention: Retention,
        evidence_key: EvidencePublicKey,
        recorder_config: RecorderConfig,
        storage: StorageConfig,
        gate: Gate,
        power: PowerMonitor | None,
        faults: Faults,
        telemetry: Telemetry,
        publish: Publish,
        spawn: Callable[[Coroutine[Any, Any, object]], None],
        wake: asyncio.Event,
        clock: Callable[[], datetime],
    ) -> None:
        self._source = source
        self._index = index
        self._retention = retention
        self._segments_dir = recorder_config.data_dir
        self._storage = storage
        self._gate = gate
        self._power = power
        self._faults = faults
        self._telemetry = telemetry
        self._publish = publish
        self._spawn = spawn
        self._wake = wake
        self._clock = clock
        self._report_lock = asyncio.Lock()
        self._chain_reports = ChainReports(index)
        self.recorder = Recorder(
            source=source,
            index=index,
            evidence_key=evidence_key,
            config=recorder_config,
            retention=retention,
            on_started=self._started,
            on_stopped=self._stopped,
            on_storage_fault=self._storage_fault,
            on_segment=self._segment_sealed,
        )
        self._recording = False  # started here and not known to have stopped since
        self._recording_since: datetime | None = None
        self._deployment_for_masks: tuple[Any, ...] | None = None
        self._storage_retry_at = 0.0
        self._storage_halt: str | None = None

    def want(self) -> tuple[bool, str]:
        """Whether the unit should be recording, and if not, why."""
        if not self._gate.is_open:
            return False, self._gate.reason
        if self._power is not None and not self._power.should_record:
            return False, "battery low: stopped before the power goes"
        if self._storage_halt:
            return False, self._storage_halt
        return True, ""

    def describe(self) -> tuple[bool, str]:
        """Whether footage is being recorded, and if not, why (for the heartbeat)."""
        recording = self._recording and self.recorder.status.state is RecorderState.RECORDING
        want, why = self.want()
        if want and not recording:
            state = self.recorder.status
            why = (
                "camera has no signal"
                if self._source.state is SourceState.LOST
                else (state.reason.value.replace("_", " ") if state.reason else "starting")
            )
        return recording, why

    async def run(self) -> None:
        while True:
            want, _ = self.want()
            now = time.monotonic()
            status = self.recorder.status
            if (
                self._recording
                and status.state is RecorderState.STOPPED
                and status.reason in (StopReason.STORAGE_FULL, StopReason.STORAGE_FAILED)
            ):
                self._recording = False
                self._storage_halt = f"storage: {status.reason.value.replace('_', ' ')}"
                self._storage_retry_at = now + self._storage.retention_interval_s
            if self._storage_halt and now >= self._storage_retry_at:
                self._storage_halt = None
                want, _ = self.want()
            masks_key = (self._gate.deployment_id, tuple(map(tuple, self._gate.masks)))
            if want and masks_key != self._deployment_for_masks:
                self.recorder.set_masks(self._gate.masks)
                self._retention.policy = self._retention.policy.model_copy(
                    update={
                        "max_age": timedelta(
                            days=self._gate.retention_days or self._storage.retention_days
                        )
                    }
                )
                self._deployment_for_masks = masks_key
            if want and not self._recording:
                await asyncio.to_thread(self._source.stop)
                self._recording_since = self._clock()
                await self.recorder.start()
                self._recording = self.recorder.status.state is not RecorderState.STOPPED
                if not self._recording:
                    self._storage_halt = "storage: held footage fills the disk"
                    self._storage_retry_at = now + self._storage.retention_interval_s
                    self._source.start(None)
            elif not want and self._recording:
                await self.recorder.stop(StopReason.REQUESTED)
                self._recording = False
                self._recording_since = None
                self._source.start(None)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await self._wake.wait()

    async def stop_for_shutdown(self) -> None:
        """Seal the open segment and say so."""
        if self._recording:
            await self.recorder.stop(StopReason.REQUESTED)
            self._recording = False
            await self._publish(self._telemetry.event(RecordingStopped(reason="agent stopping")))

    # -- the recorder's callbacks ----------------------------------------------------------

    def _started(self, status: RecorderStatus) -> None:
        body = RecordingStarted(deployment_id=self._gate.deployment_id)
        self._spawn(self._publish(self._telemetry.event(body)))

    def _stopped(self, status: RecorderStatus) -> None:
        reason = status.reason.value if status.reason else "stopped"
        why = self.want()[1] or reason.replace("_", " ")
        self._spawn(self._publish(self._telemetry.event(RecordingStopped(reason=why))))

    def _storage_fault(self, code: FaultCode, detail: str) -> None:
        self._spawn(self._faults.raise_fault(code, detail, check="storage"))

    def _segment_sealed(self, summary: SegmentSummaryInfo, chain_hash: str) -> None:
        self._spawn(self._report_segment(summary, chain_hash))

    async def _report_segment(self, summary: SegmentSummaryInfo, chain_hash: str) -> None:
        """Sign a checkpoint of the index's head and tell the controller what was sealed,
        with the chain entries since the previous report: the controller keeps its own
        copy of the chain, so a segment removed, reordered or altered on the unit later is
        detectable."""
        entry = SegmentSummary(
            segment_id=summary.segment_id,
            started_at=summary.started_at,
            ended_at=summary.ended_at,
            size=summary.file_bytes,
            sha256=summary.file_sha256,
            chain_hash=chain_hash,
            truncated=summary.truncated,
        )
        async with self._report_lock:  # reports leave in chain order, each run once
            checkpoint, entries = await asyncio.to_thread(self._chain_reports.next_run)
            await self._publish(self._telemetry.segments([entry], entries, checkpoint))

    # -- for the self-tests ----------------------------------------------------------------

    def _newest_segment(self) -> IndexEntry | None:
        entries = self._index.entries(
            start=self._clock() - timedelta(hours=2), include_deleted=False
        )
        return max(entries, key=lambda e: e.ended_at, default=None)

    def newest_segment_end(self) -> datetime | None:
        """When recording last made progress: the newest segment's end, or the moment
        recording started when its first segment is still open."""
        newest = self._newest_segment()
        ends = [t for t in (newest.ended_at if newest else None, self._recording_since) if t]
        return max(ends, default=None)

    def newest_segment_intact(self) -> bool:
        """The newest sealed segment reads back whole and matches its index entry (no key
        is needed: the check is on the encrypted file)."""
        newest = self._newest_segment()
        if newest is None:
            return True
        with (self._segments_dir / newest.file_name).open("rb") as f:
            info = inspect_segment(f, segment_id=newest.segment_id)
        summary = info.summary()
        return summary is not None and summary.file_sha256 == newest.sha256
