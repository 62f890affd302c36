"""``synthetic:`` a generated street-like scene with a moving object and a burned-in clock,
for tests, demos and a unit commissioned before its camera is fitted.

Faults can be injected by URL query (``synthetic:?fault=frozen&width=640&height=360&fps=25``),
at run time with `SyntheticSource.inject(fault)`, or from another process through a control
file named by ``fault_file=PATH`` (its content, one fault name, is read once a second; a
missing or empty file means no fault): demos and end-to-end tests use it to break a running
unit's camera.

- ``black``: an all-black picture (lens cap, dead IR illuminator)
- ``frozen``: the last picture repeated exactly, clock included (a hung encoder)
- ``blur``: the scene heavily blurred (condensation, lost focus)
- ``covered``: most of the view hidden by a flat dark object (a bag, foliage, vandalism)
- ``no_signal``: nothing is delivered and reopening fails until the fault is cleared
"""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime
from enum import StrEnum
from fractions import Fraction
from typing import Any
from urllib.parse import parse_qs, urlsplit

import av
import cv2
import numpy as np

from edge_agent.backoff import Backoff
from edge_agent.capture.base import (
    CaptureSource,
    MediaKind,
    SignalLost,
    StreamInfo,
    UnsupportedSource,
)

__all__ = ["SyntheticFault", "SyntheticSource", "render_scene"]

Image = np.ndarray[Any, np.dtype[np.uint8]]


class SyntheticFault(StrEnum):
    NONE = "none"
    BLACK = "black"
    FROZEN = "frozen"
    BLUR = "blur"
    COVERED = "covered"
    NO_SIGNAL = "no_signal"


def _background(width: int, height: int) -> Image:
    """A static scene with texture (so blur and focus measures have something to see)."""
    y = np.linspace(60, 200, height, dtype=np.float32)[:, None]
    x = np.linspace(0, 40, width, dtype=np.float32)[None, :]
    sky = (y + x).astype(np.uint8)
    img = np.dstack([sky, np.clip(sky.astype(np.int16) + 10, 0, 255).astype(np.uint8), sky])
    rng = np.random.default_rng(7)
    for _ in range(24):  # buildings / street furniture
        x0 = int(rng.integers(0, width))
        w = int(rng.integers(width // 40 + 2, width // 8 + 3))
        top = int(rng.integers(height // 5, height // 2))
        colour = tuple(int(c) for c in rng.integers(40, 220, 3))
        cv2.rectangle(img, (x0, top), (x0 + w, height), colour, -1)
        for wy in range(top + 6, height - 6, 14):  # windows: fine detail
            for wx in range(x0 + 4, x0 + w - 4, 10):
                cv2.rectangle(img, (wx, wy), (wx + 4, wy + 6), (230, 230, 200), -1)
    noise = rng.integers(0, 24, (height, width, 1), dtype=np.uint8)
    return np.asarray(cv2.add(img, np.repeat(noise, 3, axis=2)), dtype=np.uint8)


def render_scene(background: Image, index: int, fps: float, at: datetime) -> Image:
    """Picture number `index`: the background, a moving box and the clock burned in."""
    img = background.copy()
    h, w = img.shape[:2]
    period = max(1, int(fps * 8))
    phase = (index % period) / period
    cx = int(w * 0.1 + w * 0.8 * phase)
    cy = int(h * 0.75)
    size = max(8, h // 10)
    cv2.rectangle(img, (cx - size, cy - size), (cx + size, cy + size), (20, 40, 200), -1)
    scale = max(0.4, h / 720)
    text = at.strftime("%Y-%m-%d %H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
    org = (int(10 * scale), int(40 * scale))
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 4, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return img


class SyntheticSource(CaptureSource):
    kind = MediaKind.FRAMES

    def __init__(
        self,
        url: str = "synthetic:",
        *,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        realtime: bool | None = None,
        fault: SyntheticFault | None = None,
        backoff: Backoff | None = None,
        sample_interval: float | None = 1.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "synthetic":
            raise UnsupportedSource(url, "not a synthetic: URL")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        try:
            self.width = width or int(query.get("width", 1280))
            self.height = height or int(query.get("height", 720))
            self.fps = fps or float(query.get("fps", 25))
            initial = fault or SyntheticFault(query.get("fault", "none"))
        except ValueError as exc:
            raise UnsupportedSource(url, str(exc)) from exc
        if self.width < 16 or self.height < 16 or self.width % 2 or self.height % 2:
            raise UnsupportedSource(url, "width and height must be even and at least 16")
        if not 0 < self.fps <= 120:
            raise UnsupportedSource(url, "fps must be in (0, 120]")
        if realtime is None:
            realtime = query.get("realtime", "1") not in {"0", "false", "no"}
        super().__init__(url, backoff=backoff, sample_interval=sample_interval)
        self.realtime = realtime
        self._fault = initial
        self._background = _background(self.width, self.height)
        self._index = 0
        self._last: Image | None = None
        self._t0 = 0.0
        self._time_base = Fraction(1, 90_000)
        self._fault_file = query.get("fault_file")
        self._fault_checked = 0.0

    @property
    def fault(self) -> SyntheticFault:
        return self._fault

    def inject(self, fault: SyntheticFault | str) -> None:
        """Switch the injected fault (thread-safe); `SyntheticFault.NONE` clears it."""
        self._fault = SyntheticFault(fault)  # one attribute store: atomic under the GIL

    def clear_fault(self) -> None:
        self.inject(SyntheticFault.NONE)

    def _open(self) -> StreamInfo:
        self._fault_checked = 0.0
        self._poll_fault_file()
        if self._fault is SyntheticFault.NO_SIGNAL:
            raise SignalLost("no signal (injected)")
        self._index = 0
        self._t0 = time.monotonic()
        return StreamInfo(
            generation=self._next_generation(),
            kind=MediaKind.FRAMES,
            codec="rawvideo",
            width=self.width,
            height=self.height,
            time_base=self._time_base,
            frame_rate=self.fps,
        )

    def _poll_fault_file(self) -> None:
        now = time.monotonic()
        if self._fault_file is None or now - self._fault_checked < 1.0:
            return
        self._fault_checked = now
        try:
            with open(self._fault_file, encoding="utf-8") as f:
                name = f.read().strip() or SyntheticFault.NONE.value
        except FileNotFoundError:
            name = SyntheticFault.NONE.value
        except OSError:
            return
        with contextlib.suppress(ValueError):  # an unknown word leaves the picture as it was
            self._fault = SyntheticFault(name)

    def next_image(self) -> Image:
        """Render the next picture according to the current fault (no pacing)."""
        self._poll_fault_file()
        fault = self._fault
        if fault is SyntheticFault.NO_SIGNAL:
            raise SignalLost("no signal (injected)")
        if fault is SyntheticFault.FROZEN and self._last is not None:
            return self._last
        if fault is SyntheticFault.BLACK:
            img = np.zeros((self.height, self.width, 3), np.uint8)
        else:
            img = render_scene(self._background, self._index, self.fps, datetime.now(UTC))
            if fault is SyntheticFault.BLUR:
                k = (max(self.width, self.height) // 40) | 1
                img = np.asarray(cv2.GaussianBlur(img, (k, k), 0), dtype=np.uint8)
            elif fault is SyntheticFault.COVERED:
                h, w = self.height, self.width
                cv2.rectangle(img, (w // 10, h // 12), (w - w // 10, h), (32, 36, 34), -1)
        self._last = img
        return img

    def _read(self) -> av.VideoFrame:
        due = self._t0 + self._index / self.fps
        if self.realtime:
            wait = due - time.monotonic()
            if wait > 0:
                self._sleep(wait)
        image = self.next_image()
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts = round(self._index / self.fps / self._time_base)
        frame.time_base = self._time_base
        self._index += 1
        return frame

    def _sample_bgr(self, frame: av.VideoFrame) -> Image:
        return self._last.copy() if self._last is not None else super()._sample_bgr(frame)

    def _close(self) -> None:
        self._last = None if self._fault is not SyntheticFault.FROZEN else self._last
