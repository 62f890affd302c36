"""A local V4L2 camera (``/dev/videoN`` or ``v4l2:/dev/videoN?width=1280&height=720&fps=25``)
read with OpenCV. It delivers raw pictures, which the recorder encodes."""

from __future__ import annotations

import time
from fractions import Fraction
from typing import Any
from urllib.parse import parse_qs, urlsplit

import av
import cv2

from edge_agent.backoff import Backoff
from edge_agent.capture.base import (
    CaptureSource,
    MediaKind,
    SignalLost,
    StreamInfo,
    UnsupportedSource,
)

__all__ = ["V4L2Source"]

_TIME_BASE = Fraction(1, 90_000)


class V4L2Source(CaptureSource):
    kind = MediaKind.FRAMES

    def __init__(
        self,
        url: str,
        *,
        backoff: Backoff | None = None,
        sample_interval: float | None = 1.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme == "v4l2":
            device = parts.path or parts.netloc
        elif parts.scheme == "" and url.startswith("/dev/video"):
            device = parts.path
        else:
            raise UnsupportedSource(url, "not a V4L2 device")
        if not device.startswith("/dev/video") or not device[len("/dev/video") :].isdigit():
            raise UnsupportedSource(url, "the device must be /dev/videoN")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        try:
            self.width = int(query.get("width", 0))
            self.height = int(query.get("height", 0))
            self.fps = float(query.get("fps", 0))
        except ValueError as exc:
            raise UnsupportedSource(url, str(exc)) from exc
        super().__init__(url, backoff=backoff, sample_interval=sample_interval)
        self.device = device
        self._cap: Any = None
        self._t0 = 0.0
        self._last_pts = -1

    def _open(self) -> StreamInfo:
        cap = cv2.VideoCapture(int(self.device[len("/dev/video") :]), cv2.CAP_V4L2)
        if not cap.isOpened():
            cap.release()
            raise SignalLost(f"cannot open {self.device}")
        if self.width and self.height:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        if self.fps:
            cap.set(cv2.CAP_PROP_FPS, self.fps)
        width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = float(cap.get(cv2.CAP_PROP_FPS)) or None
        self._cap = cap
        self._t0 = time.monotonic()
        self._last_pts = -1
        return StreamInfo(
            generation=self._next_generation(),
            kind=MediaKind.FRAMES,
            codec="rawvideo",
            width=width,
            height=height,
            time_base=_TIME_BASE,
            frame_rate=fps,
        )

    def _read(self) -> av.VideoFrame:
        ok, image = self._cap.read()
        if not ok or image is None:
            raise SignalLost(f"{self.device} stopped delivering frames")
        if image.shape[0] % 2 or image.shape[1] % 2:  # 4:2:0 encoding needs even sizes
            image = image[: image.shape[0] // 2 * 2, : image.shape[1] // 2 * 2]
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        pts = round((time.monotonic() - self._t0) / _TIME_BASE)
        self._last_pts = max(pts, self._last_pts + 1)
        frame.pts = self._last_pts
        frame.time_base = _TIME_BASE
        return frame

    def _close(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()
