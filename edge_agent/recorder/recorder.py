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
through `call_soon_threadsafe`. `Recorder` decides what is recorded and when segments are
cut; it owns the re-encoding path's state (`encode_path`), the file and index work
(`segment_store`) and its status and callbacks (`events`). Its types are in `status`.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import av

from edge_agent.capture.base import CaptureSource, MediaKind, StreamInfo
from edge_agent.recorder.encode_path import EncodePath, Picture
from edge_agent.recorder.errors import SegmentIndexError, StorageError
from edge_agent.recorder.events import RecorderEvents, SegmentCallback, StatusCallback
from edge_agent.recorder.masks import Polygon, PrivacyMasks
from edge_agent.recorder.retention import Retention
from edge_agent.recorder.segment_file import EncoderSettings, OpenSegment
from edge_agent.recorder.segment_store import SegmentStore
from edge_agent.recorder.status import (
    Halt,
    RecorderConfig,
    RecorderState,
    RecorderStatus,
    SegmentIndexLike,
    StopReason,
)
from protocol.evidence_keys import EvidencePublicKey
from protocol.faults import FaultCode
from protocol.segment.format import SegmentSummaryInfo

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


def _utcnow() -> datetime:
    return datetime.now(UTC)


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
        on_started: StatusCallback | None = None,
        on_stopped: StatusCallback | None = None,
        on_storage_fault: Callable[[FaultCode, str], None] | None = None,
        on_segment: SegmentCallback | None = None,
    ) -> None:
        self.source = source
        self.index = index
        self.config = config
        self.retention = retention
        self._masks = PrivacyMasks(masks)
        self._events = RecorderEvents(
            clock=clock,
            on_started=on_started,
            on_stopped=on_stopped,
            on_storage_fault=on_storage_fault,
            on_segment=on_segment,
        )
        self._store = SegmentStore(
            source=source,
            index=index,
            evidence_key=evidence_key,
            config=config,
            clock=clock,
            on_segment=self._events.segment,
        )
        self._lock = threading.RLock()
        self._running = False
        self._info: StreamInfo | None = None
        self._segment: OpenSegment | None = None
        self._encode_path = EncodePath(unit_id=config.unit_id)
        self._encoding: bool | None = None  # path chosen at the last keyframe
        self._gop_masks = self._masks  # masks in force at the last keyframe
        self._cut_requested = False
        self._next_space_check = 0.0

    # -- public API ----------------------------------------------------------------------

    @property
    def status(self) -> RecorderStatus:
        return self._events.status

    def masked_samples(self) -> tuple[Picture, ...]:
        """Pictures decoded back from the encoded, masked recording (BGR, newest last;
        about one every 5 s while masks apply): what the privacy-mask self-test checks."""
        with self._lock:
            return self._encode_path.samples()

    def set_masks(self, polygons: Sequence[Polygon]) -> None:
        """New privacy masks: they apply from the next keyframe (raw sources: the next
        picture). An empty list returns to remuxing. Raises MaskError on a bad polygon."""
        masks = PrivacyMasks(polygons)
        with self._lock:
            if masks != self._masks:
                self._encode_path.clear_samples()  # samples of the old masks prove nothing now
            self._masks = masks

    async def start(self) -> None:
        """Recover what a crash left, make room, then record (returns at once)."""
        if self._running:
            return
        self._events.loop = asyncio.get_running_loop()
        await asyncio.to_thread(self.source.stop)  # a thread a storage fault asked to end
        await asyncio.to_thread(self.config.data_dir.mkdir, parents=True, exist_ok=True)
        for summary, chain in await asyncio.to_thread(self.recover):
            self._events.segment(summary, chain)
        if self.retention is not None:
            room = self._store.last_segment_bytes
            report = await asyncio.to_thread(self.retention.make_room, room)
            if report.storage_full:
                with self._lock:
                    self._events.storage_fault(FaultCode.STORAGE_LOW, "held footage fills the disk")
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
        with self._lock:
            if self._segment is None:
                return None
            self._cut_requested = True
            waiter = self._events.seal_waiter()
        try:
            async with asyncio.timeout(max_wait):
                return await asyncio.wrap_future(waiter)
        except TimeoutError:
            return await asyncio.to_thread(self._seal_forced)

    def recover(self) -> list[tuple[SegmentSummaryInfo, str]]:
        """Seal and index the segments a crash left open (blocking; only while stopped):
        their summaries and chain hashes."""
        return self._store.recover()

    # -- MediaConsumer (capture thread) ------------------------------------------------

    def on_open(self, info: StreamInfo) -> None:
        with self._lock:
            self._guard(self._finish, "new input", True)  # timestamps restart
            self._info = info
            self._encoding = None
            self._encode_path.restart_clock()

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
        if isinstance(exc, Halt):
            self._halt(exc)
        elif isinstance(exc, OSError | StorageError | SegmentIndexError):
            self._storage_failed(exc)
        else:  # bad input (a malformed packet, a codec error)
            self._input_failed(exc)

    def _storage_failed(self, exc: Exception) -> None:
        full = isinstance(exc, OSError) and exc.errno == errno.ENOSPC
        code = FaultCode.STORAGE_LOW if full else FaultCode.STORAGE_FAILED
        reason = StopReason.STORAGE_FULL if full else StopReason.STORAGE_FAILED
        self._halt(Halt(reason, code, f"{exc.__class__.__name__}: {exc}"))

    def _input_failed(self, exc: Exception) -> None:
        """Seal what was recorded and start again at the next keyframe: one bad packet
        from a camera must not stop recording."""
        log.warning("unit=%s input error, new segment at the next keyframe: %s: %s",
                    self.config.unit_id, exc.__class__.__name__, exc)  # fmt: skip
        self._encode_path.drop_decoder()
        self._encoding = None
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
                    self._encode_path.clear_samples()  # no masks in force any more
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
        for frame in self._encode_path.decode(packet, info):
            self._encode(frame)

    def _encode(self, frame: av.VideoFrame) -> None:
        if self._info is None:
            return
        media = self._encode_path.media_time(frame, self._info)
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
            self._encode_path.sample(seg)

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
            and self.retention.make_room(self._store.last_segment_bytes).storage_full
        ):
            raise Halt.storage_full()
        seg = self._store.begin(info, template=template, frame=frame, masks=masks)
        self._segment = seg
        self._next_space_check = time.monotonic() + self.config.space_check_seconds
        self._set(RecorderState.RECORDING, None)
        return seg

    def _fragment_written(self) -> None:
        if self.retention is None or time.monotonic() < self._next_space_check:
            return
        self._next_space_check = time.monotonic() + self.config.space_check_seconds
        if not self.retention.has_room() and self.retention.make_room().storage_full:
            raise Halt.storage_full()

    def _finish(self, why: str, drain: bool = False) -> SegmentSummaryInfo | None:
        seg = self._segment
        if drain:
            self._encode_path.drain(seg, self._info)
        self._segment = None
        self._cut_requested = False
        if seg is None:
            return None
        summary, chain = self._store.seal(seg)
        log.info("unit=%s segment=%s sealed (%s) bytes=%d", self.config.unit_id,
                 summary.segment_id, why, summary.file_bytes)  # fmt: skip
        self._events.sealed(summary, chain)
        return summary

    def _seal_forced(self) -> SegmentSummaryInfo | None:
        with self._lock:
            result: SegmentSummaryInfo | None = self._guard(self._finish, "on request")
            return result

    def _seal_on_stop(self, reason: StopReason) -> None:
        with self._lock:
            self._guard(self._finish, "stop", True, force=True)
            self._encode_path.drop_decoder()
            self._encoding = None
            status = self._events.status
            if status.state is not RecorderState.STOPPED or status.reason is StopReason.NO_SIGNAL:
                self._set(RecorderState.STOPPED, reason)

    def _halt(self, halt: Halt) -> None:
        log.error("unit=%s fault=%s recording stopped: %s", self.config.unit_id, halt.fault,
                  halt.detail)  # fmt: skip
        self._running = False
        seg, self._segment = self._segment, None
        self._encode_path.drop_decoder()
        self._encoding = None
        if seg is not None:
            self._store.seal_after_fault(seg)
        self._events.storage_fault(halt.fault, halt.detail)
        self._set(RecorderState.STOPPED, halt.reason)
        self._events.nothing_to_seal()
        self.source.stop()  # in the capture thread this only asks the thread to end

    def _set(self, state: RecorderState, reason: StopReason | None) -> None:
        seg = self._segment
        self._events.set(state, reason, seg.segment_id if seg is not None else None)
