"""The file and index work of the recorder's segments: a new segment file begun for the
stream (remuxed or encoded), a finished one sealed and added to the index, one that cannot
be finished salvaged as truncated, and those a crash left open recovered at start.

The recorder decides when; `SegmentStore` does the work, in the recorder's capture thread
under its lock (`recover`: in a worker thread, while the recorder is stopped).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import av

from edge_agent.capture.base import CaptureSource, StreamInfo
from edge_agent.recorder.events import SegmentCallback
from edge_agent.recorder.masks import PrivacyMasks
from edge_agent.recorder.segment_file import OpenSegment
from edge_agent.recorder.status import RecorderConfig, SegmentIndexLike
from protocol.evidence_keys import EvidencePublicKey
from protocol.segment.format import SegmentSummaryInfo
from protocol.segment.reader import seal_truncated

__all__ = ["SegmentStore"]

log = logging.getLogger(__name__)


class SegmentStore:
    """Begins, seals, salvages and recovers one recorder's segment files."""

    def __init__(
        self,
        *,
        source: CaptureSource,
        index: SegmentIndexLike,
        evidence_key: EvidencePublicKey,
        config: RecorderConfig,
        clock: Callable[[], datetime],
        on_segment: SegmentCallback,
    ) -> None:
        self._source, self._index, self._key = source, index, evidence_key
        self._config, self._clock, self._on_segment = config, clock, on_segment
        self.last_segment_bytes = 0  # the size of the last segment sealed

    def begin(
        self,
        info: StreamInfo,
        *,
        template: Any = None,
        frame: av.VideoFrame | None = None,
        masks: PrivacyMasks | None = None,
    ) -> OpenSegment:
        """A new segment file: remuxing the stream `template` describes, or (given the
        first picture) encoding pictures masked with `masks`."""
        fps = info.frame_rate or 25.0
        metadata = {
            "source": self._source.name,
            "codec": "h264" if frame is not None else info.codec,
            "width": str(frame.width if frame is not None else info.width),
            "height": str(frame.height if frame is not None else info.height),
            "path": "encode" if frame is not None else "remux",
            "privacy_masks": str(len(masks.polygons) if masks else 0),
        }
        config = self._config
        seg = OpenSegment.create(
            unit_id=config.unit_id,
            data_dir=config.data_dir,
            key=self._key,
            started_at=self._clock(),
            metadata=metadata,
            chunk_size=config.chunk_size,
            fragment_seconds=config.fragment_seconds,
        )
        try:
            if frame is not None:
                seg.encode_with(config.encoder.options(frame.width, frame.height, fps),
                                frame, fps)  # fmt: skip
                seg.masks = masks or PrivacyMasks()
            else:
                seg.remux_from(template)
        except BaseException:
            seg.abandon()
            seg.path.unlink(missing_ok=True)
            raise
        return seg

    def seal(self, seg: OpenSegment) -> tuple[SegmentSummaryInfo, str]:
        """Finish `seg` and add it to the index: its summary and chain hash. A segment
        that cannot be finished is salvaged, and the error raised."""
        try:
            summary = seg.finish(ended_at=self._clock())
        except BaseException:
            self.salvage(seg)
            raise
        self.last_segment_bytes = summary.file_bytes
        return summary, self._index.add(summary)

    def seal_after_fault(self, seg: OpenSegment) -> None:
        """Finish and index `seg` as recording stops on a fault, salvaging it if need be."""
        try:
            summary = seg.finish(ended_at=self._clock())
            self._on_segment(summary, self._index.add(summary))
        except Exception as exc:
            log.error("unit=%s segment=%s cannot be finished: %s", self._config.unit_id,
                      seg.segment_id, exc)  # fmt: skip
            self.salvage(seg)

    def salvage(self, seg: OpenSegment) -> None:
        """A segment that could not be finished: seal it as truncated now (its complete
        chunks stay readable) and index it; failing that, the next start does."""
        seg.abandon()
        try:
            with seg.path.open("r+b") as f:
                summary = seal_truncated(f)
            self._on_segment(summary, self._index.add(summary))
        except Exception as exc:
            log.error("unit=%s segment=%s left for recovery at the next start: %s",
                      self._config.unit_id, seg.segment_id, exc)  # fmt: skip

    def recover(self) -> list[tuple[SegmentSummaryInfo, str]]:
        """Seal and index the segments a crash left open: `SegmentIndex.verify` seals cut
        files and removes files of deleted segments. Their summaries and chain hashes."""
        report = self._index.verify(self._config.data_dir)
        out = []
        for segment_id in report.added:
            entry = self._index.get(segment_id)
            out.append((entry.summary(self._config.unit_id), entry.chain_hash))
            log.warning("unit=%s segment=%s recovered after a crash", self._config.unit_id,
                        segment_id)  # fmt: skip
        return out
