"""The segment recorder: camera packets remuxed (never re-encoded) into fragmented MP4,
written through the encrypted segment container, one file per segment.

- Segments last `segment_seconds` (default 60) and are cut on keyframes; the camera's
  timestamps are kept, rebased so each segment starts at zero. The wall-clock start and
  end go in the segment header and trailer.
- The muxer emits a fragment at every keyframe and at least every `fragment_seconds`; the
  segment's open chunk is sealed at each fragment, so a power cut loses at most about a
  fragment of footage. The open segment is written in place as ``<id>.seg``; at start,
  files a crash left unsealed are sealed (`seal_truncated`) and indexed.
- Raw sources, and any source while privacy masks apply, are decoded, masked and encoded
  with libx264 (ultrafast, zerolatency). Switching between remux and re-encode happens
  at the next keyframe, so no picture is lost or undecodable.
- Footage is never recorded into the last `min_free_bytes` of the disk: before each
  segment and every few seconds retention frees the oldest unheld footage; if held
  footage alone fills the disk, recording stops with a storage fault.

Demuxing, muxing and encryption run in the capture thread; callbacks reach the event loop
through `call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import av
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edge_agent.capture.base import CaptureSource, MediaKind, StreamInfo
from edge_agent.recorder.errors import SegmentIndexError, StorageError
from edge_agent.recorder.masks import Polygon, PrivacyMasks
from edge_agent.recorder.retention import Retention
from edge_agent.recorder.segment_file import EncoderSettings, OpenSegment
from protocol.evidence_keys import EvidencePublicKey
from protocol.faults import FaultCode
from protocol.segment_format import SegmentSummaryInfo, seal_truncated

__all__ = [
    "EncoderSettings",
    "Recorder",
    "RecorderConfig",
    "RecorderState",
    "RecorderStatus",
    "SegmentIndexLike",
    "StopReason",
]

log = logging.getLogger(__name__)


MASK_SAMPLE_SECONDS = 5.0


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


class _Halt(Exception):
    def __init__(self, reason: StopReason, fault: FaultCode, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.fault, self.detail = reason, fault, detail


def _full() -> _Halt:
    return _Halt(StopReason.STORAGE_FULL, FaultCode.STORAGE_LOW, "held footage fills the disk")


def _utcnow() -> datetime:
    return datetime.now(UTC)


Callback = Callable[[RecorderStatus], None]


class Recorder:
    """Records one capture source. Use from one event loop: `await start()`, `await stop()`.

    Callbacks (`on_started(status)`, `on_stopped(status)`, `on_storage_fault(code, detail)`,
    `on_segment(summary, chain_hash)`) run on that loop."""

    def __init__(
        self,
        *,
        source: CaptureSource,
        index: SegmentIndexLike,
        evidence_key: EvidencePublicKey,
        config: RecorderConfig,
        retention: Retention | None = None,
        masks: Sequence[Polygon] = (),
        clock: Callable[[], datetime] = _utcnow,
        on_started: Callback | None = None,
        on_stopped: Callback | None = None,
        on_storage_fault: Callable[[FaultCode, str], None] | None = None,
        on_segment: Callable[[SegmentSummaryInfo, str], None] | None = None,
    ) -> None:
        self.source = source
        self.index = index
        self.config = config
        self.retention = retention
        self._key = evidence_key
        self._clock = clock
        self._masks = PrivacyMasks(masks)
        self._on_started, self._on_stopped = on_started, on_stopped
        self._on_storage_fault, self._on_segment = on_storage_fault, on_segment
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running = False
        self._status = RecorderStatus(
            RecorderState.STOPPED, StopReason.NOT_STARTED, None, 0, clock()
        )
        self._info: StreamInfo | None = None
        self._segment: OpenSegment | None = None
        self._decoder: Any = None  # masked path for packet sources
        self._encoding: bool | None = None  # path chosen at the last keyframe
        self._gop_masks = self._masks  # masks in force at the last keyframe
        self._cut_requested = False
        self._seal_waiters: list[concurrent.futures.Future[SegmentSummaryInfo | None]] = []
        self._next_space_check = 0.0
        self._last_segment_bytes = 0
        self._last_media: float | None = None
        self._masked: deque[np.ndarray[Any, np.dtype[np.uint8]]] = deque(maxlen=3)
        self._next_masked_sample = 0.0

    # -- public API ----------------------------------------------------------------------

    @property
    def status(self) -> RecorderStatus:
        return self._status

    def masked_samples(self) -> tuple[np.ndarray[Any, np.dtype[np.uint8]], ...]:
        """Pictures decoded back from the encoded, masked recording (BGR, newest last;
        about one every 5 s while masks apply): what the privacy-mask self-test checks."""
        with self._lock:
            return tuple(self._masked)

    def set_masks(self, polygons: Sequence[Polygon]) -> None:
        """New privacy masks: they apply from the next keyframe (raw sources: the next
        picture). An empty list returns to remuxing. Raises MaskError on a bad polygon."""
        masks = PrivacyMasks(polygons)
        with self._lock:
            if masks != self._masks:
                self._masked.clear()  # samples of the old masks prove nothing now
            self._masks = masks

    async def start(self) -> None:
        """Recover what a crash left, make room, then record (returns at once)."""
        if self._running:
            return
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self.source.stop)  # a thread a storage fault asked to end
        await asyncio.to_thread(self.config.data_dir.mkdir, parents=True, exist_ok=True)
        for summary, chain in await asyncio.to_thread(self.recover):
            self._emit(self._on_segment, summary, chain)
        if self.retention is not None:
            report = await asyncio.to_thread(self.retention.make_room, self._last_segment_bytes)
            if report.storage_full:
                with self._lock:
                    self._fault(FaultCode.STORAGE_LOW, "held footage fills the disk")
                    self._set(RecorderState.STOPPED, StopReason.STORAGE_FULL)
                return
        with self._lock:
            self._running = True
            self._set(RecorderState.STARTING, None)
        self.source.start(self)

    async def stop(self, reason: StopReason = StopReason.REQUESTED) -> None:
        """Stop reading the camera and seal the open segment cleanly."""
        with self._lock:
            self._running = False
        await asyncio.to_thread(self.source.stop)
        await asyncio.to_thread(self._seal_on_stop, reason)

    async def seal_now(self, max_wait: float = 10.0) -> SegmentSummaryInfo | None:
        """Seal the open segment at the next keyframe (at once if none comes within
        `max_wait` seconds); the next segment starts there. None if no segment was open."""
        waiter: concurrent.futures.Future[SegmentSummaryInfo | None] = concurrent.futures.Future()
        with self._lock:
            if self._segment is None:
                return None
            self._cut_requested = True
            self._seal_waiters.append(waiter)
        try:
            async with asyncio.timeout(max_wait):
                return await asyncio.wrap_future(waiter)
        except TimeoutError:
            return await asyncio.to_thread(self._seal_forced)

    def recover(self) -> list[tuple[SegmentSummaryInfo, str]]:
        """Seal and index the segments a crash left open (blocking; only while stopped):
        `SegmentIndex.verify` seals cut files and removes files of deleted segments."""
        report = self.index.verify(self.config.data_dir)
        out = []
        for segment_id in report.added:
            entry = self.index.get(segment_id)
            out.append((entry.summary(self.config.unit_id), entry.chain_hash))
            log.warning("unit=%s segment=%s recovered after a crash", self.config.unit_id,
                        segment_id)  # fmt: skip
        return out

    # -- MediaConsumer (capture thread) ------------------------------------------------

    def on_open(self, info: StreamInfo) -> None:
        with self._lock:
            self._guard(self._finish, "new input", True)  # timestamps restart
            self._info = info
            self._encoding = None
            self._last_media = None

    def on_lost(self, reason: str) -> None:
        with self._lock:
            self._guard(self._finish, "signal lost", True)
            self._encoding = None
            if self._running:
                self._set(RecorderState.STOPPED, StopReason.NO_SIGNAL)

    def on_packet(self, packet: av.Packet[Any]) -> None:
        # Every camera packet comes through here. The common case, a packet that is not a
        # keyframe remuxed into the open segment, goes straight to the muxer.
        with self._lock:
            if not self._running:
                return
            try:
                seg = self._segment
                if seg is not None and self._encoding is False and not packet.is_keyframe:
                    if seg.mux(packet):
                        self._fragment_written()
                else:
                    self._packet(packet)
            except Exception as exc:
                self._failed(exc)

    def on_frame(self, frame: av.VideoFrame) -> None:
        with self._lock:
            self._guard(self._encode, frame)

    # -- recording (capture thread, under the lock) -----------------------------------

    def _guard(self, step: Callable[..., Any], *args: Any, force: bool = False) -> Any:
        if not (self._running or force):
            return None
        try:
            return step(*args)
        except Exception as exc:
            self._failed(exc)
        return None

    def _failed(self, exc: Exception) -> None:
        if isinstance(exc, _Halt):
            self._halt(exc)
        elif isinstance(exc, OSError | StorageError | SegmentIndexError):
            self._storage_failed(exc)
        else:  # bad input (a malformed packet, a codec error)
            self._input_failed(exc)

    def _storage_failed(self, exc: Exception) -> None:
        full = isinstance(exc, OSError) and exc.errno == errno.ENOSPC
        code = FaultCode.STORAGE_LOW if full else FaultCode.STORAGE_FAILED
        reason = StopReason.STORAGE_FULL if full else StopReason.STORAGE_FAILED
        self._halt(_Halt(reason, code, f"{exc.__class__.__name__}: {exc}"))

    def _input_failed(self, exc: Exception) -> None:
        """Seal what was recorded and start again at the next keyframe: one bad packet
        from a camera must not stop recording."""
        log.warning("unit=%s input error, new segment at the next keyframe: %s: %s",
                    self.config.unit_id, exc.__class__.__name__, exc)  # fmt: skip
        self._decoder, self._encoding = None, None
        try:
            self._finish("input error")
        except (OSError, StorageError, SegmentIndexError) as storage:
            self._storage_failed(storage)
        except Exception as again:  # `_finish` salvaged what it could
            log.error("unit=%s segment not finished: %s", self.config.unit_id, again)

    def _wants_encode(self) -> bool:
        return bool(self._masks) or (self._info is not None and self._info.kind is MediaKind.FRAMES)

    def _packet(self, packet: av.Packet[Any]) -> None:
        info = self._info
        if info is None:
            return
        if packet.is_keyframe:  # the path (remux or re-encode) changes only here
            wants_encode = self._wants_encode()
            seg = self._segment
            if self._encoding is not None and wants_encode != self._encoding:
                self._finish("path change", self._encoding)
                if not wants_encode:
                    self._masked.clear()  # no masks in force any more
            elif seg is not None and not seg.encoded:
                media = float((packet.dts or 0) * packet.time_base)
                if self._cut_requested or self._due(seg, media):
                    self._finish("keyframe cut")
            self._encoding, self._gop_masks = wants_encode, self._masks
        if self._encoding is None:
            return  # waiting for the first keyframe
        if not self._encoding:
            seg = self._segment
            if seg is None:
                if not packet.is_keyframe:
                    return  # a segment starts with a picture that decodes on its own
                seg = self._open(template=info.template)
            if seg.mux(packet):
                self._fragment_written()
            return
        if self._decoder is None:
            if not packet.is_keyframe:
                return
            self._decoder = av.CodecContext.create(info.codec, "r")
            if info.template is not None and info.template.codec_context.extradata:
                self._decoder.extradata = info.template.codec_context.extradata
            self._decoder.thread_type = "AUTO"
        for frame in self._decoder.decode(packet):
            self._encode(frame)

    def _media_time(self, frame: av.VideoFrame) -> float:
        """Seconds on the camera's clock; forced forward where the source's own
        timestamps are missing or out of order (some files carry no pts)."""
        info = self._info
        time_base = frame.time_base or (info.time_base if info else None)
        media = None if frame.pts is None or not time_base else float(frame.pts * time_base)
        step = 1.0 / ((info.frame_rate if info else None) or 25.0)
        if media is None or (self._last_media is not None and media <= self._last_media):
            media = (self._last_media or 0.0) + step
        self._last_media = media
        return media

    def _encode(self, frame: av.VideoFrame) -> None:
        if self._info is None:
            return
        media = self._media_time(frame)
        seg = self._segment
        masks = self._masks
        if not masks and self._info.kind is MediaKind.PACKETS:
            # Masks cleared: a packet source keeps the ones it had until the keyframe
            # where it goes back to remuxing. Privacy errs on the side of masking.
            masks = self._gop_masks
        if seg is not None and (seg.masks != masks or self._cut_requested or self._due(seg, media)):
            self._finish("cut")
            seg = None
        if seg is None:
            seg = self._open(frame=frame, masks=masks)
        if seg.encode(masks.apply(frame), media):
            self._fragment_written()
        if seg.last_keyframe is not None:
            self._sample_masked(seg)

    def _sample_masked(self, seg: OpenSegment) -> None:
        """Decode, now and then, a keyframe the encoder produced: the picture as it is
        recorded, for the self-test that checks the masks really are black."""
        data, seg.last_keyframe = seg.last_keyframe, None
        now = time.monotonic()
        if data is None or now < self._next_masked_sample:
            return
        self._next_masked_sample = now + MASK_SAMPLE_SECONDS
        try:
            decoder: Any = av.CodecContext.create("h264", "r")
            decoder.extradata = seg.stream.codec_context.extradata
            frames = list(decoder.decode(av.Packet(data))) + list(decoder.decode(None))
        except av.FFmpegError as exc:
            log.warning("unit=%s recorded picture not decodable for the mask check: %s",
                        self.config.unit_id, exc)  # fmt: skip
            return
        if frames:
            self._masked.append(np.asarray(frames[-1].to_ndarray(format="bgr24"), np.uint8))

    def _due(self, seg: OpenSegment, media: float) -> bool:
        return seg.elapsed(media) >= self.config.segment_seconds

    def _open(
        self,
        *,
        template: Any = None,
        frame: av.VideoFrame | None = None,
        masks: PrivacyMasks | None = None,
    ) -> OpenSegment:
        info = self._info
        assert info is not None
        if (
            self.retention is not None
            and self.retention.make_room(self._last_segment_bytes).storage_full
        ):
            raise _full()
        fps = info.frame_rate or 25.0
        metadata = {
            "source": self.source.name,
            "codec": "h264" if frame is not None else info.codec,
            "width": str(frame.width if frame is not None else info.width),
            "height": str(frame.height if frame is not None else info.height),
            "path": "encode" if frame is not None else "remux",
            "privacy_masks": str(len(masks.polygons) if masks else 0),
        }
        config = self.config
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
                seg.encode_with(self.config.encoder.options(frame.width, frame.height, fps),
                                frame, fps)  # fmt: skip
                seg.masks = masks or PrivacyMasks()
            else:
                seg.remux_from(template)
        except BaseException:
            seg.abandon()
            seg.path.unlink(missing_ok=True)
            raise
        self._segment = seg
        self._next_space_check = time.monotonic() + self.config.space_check_seconds
        self._set(RecorderState.RECORDING, None)
        return seg

    def _fragment_written(self) -> None:
        if self.retention is None or time.monotonic() < self._next_space_check:
            return
        self._next_space_check = time.monotonic() + self.config.space_check_seconds
        if not self.retention.has_room() and self.retention.make_room().storage_full:
            raise _full()

    def _finish(self, why: str, drain: bool = False) -> SegmentSummaryInfo | None:
        seg = self._segment
        if drain and self._decoder is not None:
            decoder, self._decoder = self._decoder, None
            if seg is not None and seg.encoded:  # pictures the decoder still holds
                for frame in decoder.decode(None):
                    seg.encode(seg.masks.apply(frame), self._media_time(frame))
        self._segment = None
        self._cut_requested = False
        if seg is None:
            return None
        try:
            summary = seg.finish(ended_at=self._clock())
        except BaseException:
            self._salvage(seg)
            raise
        self._last_segment_bytes = summary.file_bytes
        chain = self.index.add(summary)
        old = self._status
        self._status = RecorderStatus(old.state, old.reason, None, old.segments_sealed + 1,
                                      old.since)  # fmt: skip
        log.info("unit=%s segment=%s sealed (%s) bytes=%d", self.config.unit_id,
                 summary.segment_id, why, summary.file_bytes)  # fmt: skip
        self._emit(self._on_segment, summary, chain)
        waiters, self._seal_waiters = self._seal_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(summary)
        return summary

    def _salvage(self, seg: OpenSegment) -> None:
        """A segment that could not be finished: seal it as truncated now (its complete
        chunks stay readable) and index it; failing that, the next start does."""
        seg.abandon()
        try:
            with seg.path.open("r+b") as f:
                summary = seal_truncated(f)
            self._emit(self._on_segment, summary, self.index.add(summary))
        except Exception as exc:
            log.error("unit=%s segment=%s left for recovery at the next start: %s",
                      self.config.unit_id, seg.segment_id, exc)  # fmt: skip

    def _seal_forced(self) -> SegmentSummaryInfo | None:
        with self._lock:
            result: SegmentSummaryInfo | None = self._guard(self._finish, "on request")
            return result

    def _seal_on_stop(self, reason: StopReason) -> None:
        with self._lock:
            self._guard(self._finish, "stop", True, force=True)
            self._decoder, self._encoding = None, None
            if self._status.state is not RecorderState.STOPPED or (
                self._status.reason is StopReason.NO_SIGNAL
            ):
                self._set(RecorderState.STOPPED, reason)

    def _halt(self, halt: _Halt) -> None:
        log.error("unit=%s fault=%s recording stopped: %s", self.config.unit_id, halt.fault,
                  halt.detail)  # fmt: skip
        self._running = False
        seg, self._segment = self._segment, None
        self._decoder, self._encoding = None, None
        if seg is not None:
            try:
                summary = seg.finish(ended_at=self._clock())
                self._emit(self._on_segment, summary, self.index.add(summary))
            except Exception as exc:
                log.error("unit=%s segment=%s cannot be finished: %s", self.config.unit_id,
                          seg.segment_id, exc)  # fmt: skip
                self._salvage(seg)
        self._fault(halt.fault, halt.detail)
        self._set(RecorderState.STOPPED, halt.reason)
        for waiter in self._seal_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._seal_waiters = []
        self.source.stop()  # in the capture thread this only asks the thread to end

    # -- notifications -----------------------------------------------------------------

    def _set(self, state: RecorderState, reason: StopReason | None) -> None:
        old = self._status
        seg = self._segment.segment_id if self._segment is not None else None
        if (old.state, old.reason) == (state, reason):
            if old.segment_id != seg:
                self._status = RecorderStatus(state, reason, seg, old.segments_sealed, old.since)
            return
        self._status = RecorderStatus(state, reason, seg, old.segments_sealed, self._clock())
        if state is RecorderState.RECORDING:
            self._emit(self._on_started, self._status)
        elif state is RecorderState.STOPPED and old.state is not RecorderState.STOPPED:
            self._emit(self._on_stopped, self._status)

    def _fault(self, fault: FaultCode, detail: str) -> None:
        self._emit(self._on_storage_fault, fault, detail)

    def _emit(self, callback: Callable[..., None] | None, *args: Any) -> None:
        if callback is None:
            return
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(callback, *args)
                return
            except RuntimeError:  # the loop is closing: deliver in this thread
                pass
        callback(*args)
