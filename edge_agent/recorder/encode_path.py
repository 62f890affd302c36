"""The recorder's re-encoding path, taken by raw sources and by any source while privacy
masks apply: camera packets decoded to pictures, each picture's time on the camera's
clock, and now and then a recorded keyframe decoded back, so the privacy-mask self-test
can check the recording itself.

`EncodePath` holds that path's state. Its `Recorder` owns it and uses it only in the
capture thread, under the recorder's lock; the recorder decides which masks apply and
where segments are cut.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

import av
import numpy as np

from edge_agent.capture.base import StreamInfo
from edge_agent.recorder.segment_file import OpenSegment

__all__ = ["MASK_SAMPLE_SECONDS", "EncodePath", "Picture"]

log = logging.getLogger(__name__)

MASK_SAMPLE_SECONDS = 5.0

Picture = np.ndarray[Any, np.dtype[np.uint8]]  # BGR, height x width x 3


class EncodePath:
    """Decoder, media clock and recorded-picture samples of the re-encoding path."""

    def __init__(self, *, unit_id: str) -> None:
        self._unit_id = unit_id
        self._decoder: Any = None  # packet sources: camera packets -> pictures
        self._last_media: float | None = None
        self._samples: deque[Picture] = deque(maxlen=3)
        self._next_sample = 0.0

    def decode(self, packet: av.Packet[Any], info: StreamInfo) -> list[av.VideoFrame]:
        """The pictures in a camera packet; none until a keyframe, where decoding starts."""
        decoder = self._decoder
        if decoder is None:
            if not packet.is_keyframe:
                return []
            decoder = self._decoder = av.CodecContext.create(info.codec, "r")
            if info.template is not None and info.template.codec_context.extradata:
                decoder.extradata = info.template.codec_context.extradata
            decoder.thread_type = "AUTO"
        frames: list[av.VideoFrame] = decoder.decode(packet)
        return frames

    def drain(self, seg: OpenSegment | None, info: StreamInfo | None) -> None:
        """Drop the decoder; the pictures it still holds go into `seg` if it is encoded."""
        decoder, self._decoder = self._decoder, None
        if decoder is not None and seg is not None and seg.encoded:
            for frame in decoder.decode(None):
                seg.encode(seg.masks.apply(frame), self.media_time(frame, info))

    def drop_decoder(self) -> None:
        """Forget the decoder: decoding starts again at the next keyframe."""
        self._decoder = None

    def restart_clock(self) -> None:
        """A new input: its timestamps start afresh."""
        self._last_media = None

    def media_time(self, frame: av.VideoFrame, info: StreamInfo | None) -> float:
        """Seconds on the camera's clock; forced forward where the source's own
        timestamps are missing or out of order (some files carry no pts)."""
        time_base = frame.time_base or (info.time_base if info else None)
        media = None if frame.pts is None or not time_base else float(frame.pts * time_base)
        step = 1.0 / ((info.frame_rate if info else None) or 25.0)
        if media is None or (self._last_media is not None and media <= self._last_media):
            media = (self._last_media or 0.0) + step
        self._last_media = media
        return media

    def sample(self, seg: OpenSegment) -> None:
        """Decode, now and then, a keyframe the encoder produced: the picture as it is
        recorded, for the self-test that checks the masks really are black."""
        data, seg.last_keyframe = seg.last_keyframe, None
        now = time.monotonic()
        if data is None or now < self._next_sample:
            return
        self._next_sample = now + MASK_SAMPLE_SECONDS
        try:
            decoder: Any = av.CodecContext.create("h264", "r")
            decoder.extradata = seg.stream.codec_context.extradata
            frames = list(decoder.decode(av.Packet(data))) + list(decoder.decode(None))
        except av.FFmpegError as exc:
            log.warning("unit=%s recorded picture not decodable for the mask check: %s",
                        self._unit_id, exc)  # fmt: skip
            return
        if frames:
            self._samples.append(np.asarray(frames[-1].to_ndarray(format="bgr24"), np.uint8))

    def samples(self) -> tuple[Picture, ...]:
        """The recorded pictures sampled, newest last (about one every 5 s)."""
        return tuple(self._samples)

    def clear_samples(self) -> None:
        """Samples taken under other masks (or none) prove nothing now."""
        self._samples.clear()
