"""A unit's footage as the agent keeps it: real encrypted segment files
(`protocol.segment.writer`, the unit's enrollment keys) in the agent's own segment index
(chained, checkpoints signed with the unit's key) and hold store, and the recording-index
reports the agent would send over MQTT. `record` fills segments with random bytes (made
quickly); `record_clip` has the real recorder write a video file into them (footage that
decodes).

    unit = UnitFootage(fleet, "cam-01", tmp_path / "cam-01")
    entries = unit.record(start, count=5, seconds=60, payload=300_000)
    entries = await unit.record_clip(SAMPLE_CLIP, seconds=60, at_least_bytes=100_000_000)
    message = unit.report()                       # a RecordingIndex, as the agent sends it
"""

from __future__ import annotations

import asyncio
import os
from datetime import datetime, timedelta
from pathlib import Path

from edge_agent.capture import open_source
from edge_agent.recorder.holds import HoldStore
from edge_agent.recorder.index import IndexEntry, SegmentIndex
from edge_agent.recorder.recorder import Recorder, RecorderConfig
from edge_agent.recording_control import ChainReports
from protocol.evidence_keys import EvidencePublicKey
from protocol.messages import RecordingIndex, SegmentSummary, utcnow
from protocol.segment.format import SegmentSummaryInfo, segment_file_name
from protocol.segment.writer import SegmentWriter
from protocol.signing import load_private_key
from provisioning import Fleet

__all__ = ["UnitFootage", "write_segment"]


def write_segment(
    path: Path,
    *,
    unit_id: str,
    segment_id: str,
    evidence_key: EvidencePublicKey,
    started_at: datetime,
    ended_at: datetime,
    payload: bytes,
) -> SegmentSummaryInfo:
    """One sealed segment file holding `payload` (its size depends only on the ids' and
    the payload's lengths)."""
    with path.open("wb") as f:
        writer = SegmentWriter(
            f,
            unit_id=unit_id,
            segment_id=segment_id,
            evidence_key=evidence_key,
            started_at=started_at,
            durable=False,
        )
        writer.write(payload)
        return writer.finish(ended_at=ended_at)


class UnitFootage:
    def __init__(self, fleet: Fleet, unit_id: str, root: Path) -> None:
        bundle = fleet.layout.bundle_dir(unit_id)
        self.fleet = fleet
        self.unit_id = unit_id
        self.root = root
        self.signing_key = load_private_key((bundle / "unit-signing.key").read_bytes())
        self.evidence_key = EvidencePublicKey.from_json(
            (bundle / "evidence-public.json").read_bytes()
        )
        self.segments_dir = root / "segments"
        self.segments_dir.mkdir(parents=True, exist_ok=True)
        self.index = SegmentIndex(
            root / "index.sqlite", unit_id=unit_id, signing_key=self.signing_key
        )
        self.holds = HoldStore(root / "holds.sqlite")
        self._reports = ChainReports(self.index)
        self._seq = 0
        self._new: list[SegmentSummary] = []

    def close(self) -> None:
        self.index.close()
        self.holds.close()

    def record(
        self,
        start: datetime,
        count: int,
        *,
        seconds: float = 60.0,
        payload: int = 200_000,
        prefix: str = "seg",
    ) -> list[IndexEntry]:
        """`count` back-to-back segments from `start`, each sealed and indexed."""
        made = []
        for i in range(count):
            begin = start + timedelta(seconds=seconds * i)
            sid = f"{prefix}-{begin:%Y%m%dT%H%M%S}"
            summary = write_segment(
                self.segments_dir / segment_file_name(sid),
                unit_id=self.unit_id,
                segment_id=sid,
                evidence_key=self.evidence_key,
                started_at=begin,
                ended_at=begin + timedelta(seconds=seconds),
                payload=os.urandom(payload),
            )
            chain = self.index.add(summary)
            entry = self.index.get(sid)
            assert entry is not None
            made.append(entry)
            self._new.append(
                SegmentSummary(
                    segment_id=sid,
                    started_at=summary.started_at,
                    ended_at=summary.ended_at,
                    size=summary.file_bytes,
                    sha256=summary.file_sha256,
                    chain_hash=chain,
                )
            )
        return made

    async def record_clip(
        self, clip: Path, *, seconds: float, at_least_bytes: int, within: float = 600.0
    ) -> list[IndexEntry]:
        """The real recorder writes the looped `clip` as fast as it reads (no pacing) into
        segments of `seconds` of video, until at least `at_least_bytes` are sealed; the
        segments recorded, in order."""
        sealed: list[int] = []
        first = len(self.index.entries())

        def on_segment(summary: SegmentSummaryInfo, chain: str) -> None:
            sealed.append(summary.file_bytes)
            self._new.append(
                SegmentSummary(
                    segment_id=summary.segment_id,
                    started_at=summary.started_at,
                    ended_at=summary.ended_at,
                    size=summary.file_bytes,
                    sha256=summary.file_sha256,
                    chain_hash=chain,
                )
            )

        recorder = Recorder(
            source=open_source(f"file:{clip}?realtime=0"),
            index=self.index,
            evidence_key=self.evidence_key,
            config=RecorderConfig(
                unit_id=self.unit_id, data_dir=self.segments_dir, segment_seconds=seconds
            ),
            on_segment=on_segment,
        )
        await recorder.start()
        try:
            async with asyncio.timeout(within):
                while sum(sealed) < at_least_bytes:  # noqa: ASYNC110 - the recorder's thread
                    await asyncio.sleep(0.1)
        finally:
            await recorder.stop()
        return self.index.entries()[first:]

    def report(self) -> RecordingIndex:
        """The recording-index report the agent sends next: the segments sealed since the
        last one, the chain entries since, and a fresh signed checkpoint."""
        checkpoint, entries = self._reports.next_run()
        self._seq += 1
        segments, self._new = self._new, []
        return RecordingIndex(
            unit_id=self.unit_id,
            seq=self._seq,
            sent_at=utcnow(),
            boot_id="unit-footage",
            segments=segments,
            entries=entries,
            checkpoint=checkpoint,
        )
