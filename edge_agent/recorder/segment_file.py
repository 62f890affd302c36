"""One segment being written: camera packets (or encoded pictures) -> fragmented MP4 muxer
-> `SegmentWriter` -> ``<id>.seg``. Used by the recorder, in the capture thread.

`OpenSegment.mux` runs for every camera packet, so it is kept to the few attribute
accesses it needs: no logging, clock reads or allocations beyond PyAV's own.
"""

from __future__ import annotations

import io
import logging
import secrets
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from pydantic import BaseModel, ConfigDict, Field

from edge_agent.recorder.masks import PrivacyMasks
from protocol.evidence_keys import EvidencePublicKey
from protocol.segment.format import SegmentSummaryInfo, segment_file_name
from protocol.segment.writer import SegmentWriter

__all__ = ["EncoderSettings", "OpenSegment", "new_segment_id"]

log = logging.getLogger(__name__)

_MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"
_ENC_TIME_BASE = Fraction(1, 90_000)
# The muxer hands its output over in pieces of this size: larger pieces mean fewer calls
# into Python for the same bytes (a fragment of 720p H.264 is about 150-250 KiB).
_MUX_BUFFER = 256 * 1024


class EncoderSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: str = Field("ultrafast", description="x264 preset")
    tune: str = Field("zerolatency", description="x264 tune")
    crf: int = Field(23, ge=0, le=51, description="Quality target")
    bitrate_kbps: int | None = Field(None, gt=0, description="Cap; None: from size and rate")
    gop_seconds: float = Field(2.0, gt=0, le=10, description="Keyframe interval")

    def options(self, width: int, height: int, fps: float) -> dict[str, str]:
        cap = self.bitrate_kbps or int(min(8000, max(400, width * height * fps * 0.07 / 1000)))
        return {
            "preset": self.preset,
            "tune": self.tune,
            "crf": str(self.crf),
            "maxrate": f"{cap}k",
            "bufsize": f"{2 * cap}k",
            "g": str(max(1, round(fps * self.gop_seconds))),
        }


def new_segment_id(started_at: datetime) -> str:
    """Sortable by start time, unique: ``20250301T071500.123456Z-3f9a1c``."""
    return started_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ-") + secrets.token_hex(3)


class _Tap(io.RawIOBase):
    """Passes the muxer's output to the segment writer and counts it, so the recorder
    sees when a fragment has been written."""

    def __init__(self, target: SegmentWriter) -> None:
        super().__init__()
        self.write_to = target.write
        self.count = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, data: Any) -> int:
        n: int = self.write_to(data)
        self.count += n
        return n


class OpenSegment:
    """One segment being written: muxer -> `SegmentWriter` -> ``<id>.seg``."""

    def __init__(self, path: Path, file: io.BufferedWriter, writer: SegmentWriter) -> None:
        self.path, self.file, self.writer = path, file, writer
        self.segment_id = writer.header.segment_id
        self.tap = _Tap(writer)
        self.container: Any = None
        self.stream: Any = None
        self.encoded = False
        self.masks = PrivacyMasks()
        self.last_keyframe: bytes | None = None  # latest encoded keyframe (masked path)
        self.t0: float | None = None  # media time of the first picture
        self._first_dts: int | None = None
        self._last_ts = -1
        self._mux_one: Any = None  # the container's `mux_one`, looked up once

    @classmethod
    def create(
        cls,
        *,
        unit_id: str,
        data_dir: Path,
        key: EvidencePublicKey,
        started_at: datetime,
        metadata: dict[str, str],
        chunk_size: int,
        fragment_seconds: float,
    ) -> OpenSegment:
        segment_id = new_segment_id(started_at)
        path = data_dir / segment_file_name(segment_id)
        file = path.open("xb")
        try:
            writer = SegmentWriter(
                file,
                unit_id=unit_id,
                segment_id=segment_id,
                evidence_key=key,
                started_at=started_at,
                chunk_size=chunk_size,
                metadata=metadata,
            )
            seg = cls(path, file, writer)
            options = {
                "movflags": _MOVFLAGS,
                "frag_duration": str(round(fragment_seconds * 1_000_000)),
                "flush_packets": "1",
            }
            seg.container = av.open(
                seg.tap, "w", format="mp4", options=options, buffer_size=_MUX_BUFFER
            )
            seg._mux_one = seg.container.mux_one
        except BaseException:
            file.close()
            path.unlink(missing_ok=True)  # header only: no footage in it
            raise
        return seg

    def remux_from(self, template: Any) -> None:
        self.stream = self.container.add_stream_from_template(template)

    def encode_with(self, options: dict[str, str], frame: av.VideoFrame, fps: float) -> None:
        rate = Fraction(fps).limit_denominator(1001)
        self.stream = self.container.add_stream("libx264", rate=rate, options=options)
        self.stream.width, self.stream.height = frame.width, frame.height
        self.stream.pix_fmt = "yuv420p"
        self.stream.codec_context.time_base = _ENC_TIME_BASE
        self.encoded = True

    def elapsed(self, media: float) -> float:
        return 0.0 if self.t0 is None else media - self.t0

    def mux(self, packet: av.Packet[Any]) -> bool:
        """Remux one camera packet (the source ensures dts and pts are set); True when a
        fragment went to disk, now sealed and synced."""
        dts: int = packet.dts  # type: ignore[assignment]
        first = self._first_dts
        if first is None:
            first = self._first_dts = dts
            self.t0 = float(dts * packet.time_base)
        if dts <= self._last_ts:  # the muxer would refuse it
            log.debug("segment=%s dropped packet with non-increasing dts", self.segment_id)
            return False
        self._last_ts = dts
        packet.dts = dts - first
        packet.pts = packet.pts - first  # type: ignore[operator]
        packet.stream = self.stream
        tap = self.tap
        before = tap.count
        self._mux_one(packet)
        if tap.count == before:
            return False
        self.writer.flush_chunk()  # the fragment is now sealed and synced: crash-safe
        return True

    def encode(self, frame: av.VideoFrame, media: float) -> bool:
        """Encode one (masked) picture at `media` seconds; True when a fragment went out."""
        if self.t0 is None:
            self.t0 = media
        pts = max(round((media - self.t0) / _ENC_TIME_BASE), self._last_ts + 1)
        self._last_ts = pts
        frame.pts, frame.time_base = pts, _ENC_TIME_BASE
        before = self.tap.count
        for packet in self.stream.encode(frame):
            if packet.is_keyframe and self.masks:
                self.last_keyframe = bytes(packet)  # kept for the privacy-mask self-test
            self.container.mux(packet)
        if self.tap.count == before:
            return False
        self.writer.flush_chunk()
        return True

    def finish(self, ended_at: datetime) -> SegmentSummaryInfo:
        if self.encoded:
            for packet in self.stream.encode(None):
                self.container.mux(packet)
        self.container.close()
        summary = self.writer.finish(ended_at=ended_at)
        self.file.close()
        return summary

    def abandon(self) -> None:
        """Drop the open segment after a storage failure; the next start seals it."""
        for close in (self.container.close, self.file.close):
            try:
                close()
            except Exception as exc:
                log.debug("segment=%s close after failure: %s", self.segment_id, exc)
