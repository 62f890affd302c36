"""Keeps what the picture checks need from a live stream, at almost no cost: the time of
every frame, and one prepared (downscaled grey) frame about every second over a window."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge_agent.selftest.analysis import PreparedFrame, prepare

__all__ = ["FrameSampler", "SampleWindow"]


@dataclass(frozen=True, slots=True)
class SampleWindow:
    samples: list[PreparedFrame]
    sample_times: list[float]
    frame_times: list[float]


class FrameSampler:
    """Feed it every decoded frame's time with `wants()`/`add()`; decode and hand over a
    frame only when `wants(t)` is true, so the capture path decodes ~1 frame a second for
    analysis. Times are seconds on one monotonic clock (stream or arrival time)."""

    def __init__(self, *, interval_s: float = 1.0, window_s: float = 12.0) -> None:
        if interval_s <= 0 or window_s < 3 * interval_s:
            raise ValueError("need interval_s > 0 and a window of at least 3 intervals")
        self.interval_s = interval_s
        self.window_s = window_s
        self._frame_times: deque[float] = deque()
        self._samples: deque[tuple[float, PreparedFrame]] = deque()
        self._next_sample = float("-inf")

    def tick(self, t: float) -> bool:
        """Note a frame at time `t`; True when this frame should be sampled."""
        self._frame_times.append(t)
        self._trim(t)
        return t >= self._next_sample

    def add(self, t: float, frame: npt.NDArray[np.uint8] | PreparedFrame) -> None:
        """Keep the frame at time `t` (already noted by `tick`) as a sample."""
        prepared = frame if isinstance(frame, PreparedFrame) else prepare(frame)
        self._samples.append((t, prepared))
        self._next_sample = t + self.interval_s * 0.95  # tolerate jitter in frame times
        self._trim(t)

    def window(self) -> SampleWindow:
        return SampleWindow(
            samples=[p for _, p in self._samples],
            sample_times=[t for t, _ in self._samples],
            frame_times=list(self._frame_times),
        )

    def clear(self) -> None:
        """Forget everything (the source was restarted or changed)."""
        self._frame_times.clear()
        self._samples.clear()
        self._next_sample = float("-inf")

    def _trim(self, now: float) -> None:
        oldest = now - self.window_s
        while self._frame_times and self._frame_times[0] < oldest:
            self._frame_times.popleft()
        while self._samples and self._samples[0][0] < oldest:
            self._samples.popleft()
