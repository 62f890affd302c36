"""The agent's self-test suite: the checks wired to the live parts of the unit.

Picture checks run on frames sampled about once a second from the capture source (never
every frame); the baseline is learned from the first samples after a deployment starts and
kept on disk. System checks read the recorder, the disk, the clock, the UPS and the link.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from edge_agent.capture.base import CaptureSource, SourceState
from edge_agent.selftest.baseline import Baseline, BaselineError, learn_baseline
from edge_agent.selftest.image import Polygon, run_image_checks
from edge_agent.selftest.measurements import ClockOffsets
from edge_agent.selftest.outcome import CheckOutcome
from edge_agent.selftest.runner import SelfTestCheck
from edge_agent.selftest.sampler import FrameSampler
from edge_agent.selftest.sntp import NTP_PORT, parse_server
from edge_agent.selftest.system import (
    check_broker,
    check_clock,
    check_recording,
    check_storage,
    check_temperature,
    check_ups,
)
from edge_agent.selftest.thresholds import SelfTestThresholds
from protocol.faults import FaultCode

__all__ = ["LiveSampler", "SuiteInputs", "build_checks"]

log = logging.getLogger(__name__)

#: Samples needed to learn a baseline (about this many seconds of picture).
BASELINE_SAMPLES = 6


class LiveSampler:
    """Takes the source's sampled frame about once a second into a rolling window, and
    learns (or loads) the deployment baseline from the first samples."""

    def __init__(self, source: CaptureSource, baseline_path: Path, *, window_s: float = 12.0):
        self.source = source
        self.baseline_path = baseline_path
        self.sampler = FrameSampler(interval_s=1.0, window_s=window_s)
        self.baseline: Baseline | None = None
        self._last_seen: datetime | None = None
        self._learning: list[object] = []
        self._learning_times: list[float] = []
        if baseline_path.exists():
            try:
                self.baseline = Baseline.load(baseline_path)
            except BaselineError as exc:
                log.warning("baseline unreadable, learning again: %s", exc)

    def reset_baseline(self) -> None:
        """A new deployment: the view is learned again from the next samples."""
        self.baseline = None
        self._learning.clear()
        self._learning_times.clear()
        self.baseline_path.unlink(missing_ok=True)

    def poll(self) -> None:
        frame = self.source.latest_frame()
        if frame is None or frame.captured_at == self._last_seen:
            return
        self._last_seen = frame.captured_at
        t = time.monotonic()
        self.sampler.tick(t)
        self.sampler.add(t, frame.image)
        if self.baseline is None:
            self._learning.append(frame.image)
            self._learning_times.append(t)
            if len(self._learning) >= BASELINE_SAMPLES:
                self._learn()

    def _learn(self) -> None:
        stats = self.source.stats()
        fps = stats.frame_rate if stats.frame_rate > 0 else None
        try:
            self.baseline = learn_baseline(self._learning, expected_fps=fps)  # type: ignore[arg-type]
            self.baseline.save(self.baseline_path)
            log.info("baseline learned fps=%s path=%s", fps, self.baseline_path)
        except BaselineError as exc:
            log.warning("baseline not learned yet: %s", exc)
        self._learning.clear()
        self._learning_times.clear()

    async def run(self, interval_s: float = 0.5) -> None:
        while True:
            await asyncio.to_thread(self.poll)
            await asyncio.sleep(interval_s)


@dataclass
class SuiteInputs:
    """What the checks read from the running agent."""

    sampler: LiveSampler
    storage_dir: Path
    newest_segment_end: Callable[[], datetime | None]
    newest_segment_intact: Callable[[], bool] | None
    recording_expected: Callable[[], bool]
    masks: Callable[[], Sequence[Polygon]]
    masked_frames: Callable[[], Sequence[object]]
    ups_status: Callable[[], Awaitable[tuple[bool, str | None]]] | None
    broker_round_trip: Callable[[], Awaitable[float]] | None
    thermal_root: Path
    ntp_server: str | None
    thresholds: Callable[[], SelfTestThresholds]
    extra: list[SelfTestCheck] = field(default_factory=list)
    clock_offsets: ClockOffsets | None = None
    """Where the clock check keeps each offset it measures (for the heartbeat)."""


def _picture(inputs: SuiteInputs) -> list[CheckOutcome]:
    sampler = inputs.sampler
    t = inputs.thresholds()
    source = sampler.source
    if source.state is not SourceState.LIVE:
        msg = f"camera is {source.state.value}: no picture to check"
        return [
            CheckOutcome("camera_signal", "fail", 0.0, None, "fps", msg, FaultCode.CAMERA_NO_SIGNAL)
        ]
    baseline = sampler.baseline
    window = sampler.sampler.window()
    if baseline is None or len(window.samples) < 3:
        msg = "picture checks wait for the deployment baseline (a few seconds of picture)"
        return [
            CheckOutcome(
                "camera_signal", "not_assessed", None, None, "fps", msg, FaultCode.CAMERA_NO_SIGNAL
            )
        ]
    stats = source.stats()
    # The source measures the real frame rate over its recent frames; the check compares
    # it with the baseline's, so synthesise evenly spaced frame times at that rate.
    now = time.monotonic()
    count = max(2, int(stats.frame_rate * 4))
    frame_times = [now - 4 + 4 * i / count for i in range(count)] if stats.frame_rate else []
    return run_image_checks(
        window.samples,
        sample_times=window.sample_times,
        frame_times=frame_times,
        baseline=baseline,
        masks=list(inputs.masks()),
        recorded=list(inputs.masked_frames()),  # type: ignore[arg-type]
        now=now,
        thresholds=t,
    )


async def _clock(inputs: SuiteInputs) -> CheckOutcome:
    host, port = parse_server(inputs.ntp_server) if inputs.ntp_server else (None, NTP_PORT)
    return await check_clock(
        host, port=port, thresholds=inputs.thresholds(), measured=inputs.clock_offsets
    )


def build_checks(inputs: SuiteInputs) -> list[SelfTestCheck]:
    t = inputs.thresholds
    checks = [
        SelfTestCheck(
            "picture", lambda: _picture(inputs), FaultCode.CAMERA_NO_SIGNAL, blocking=True
        ),
        SelfTestCheck(
            "recording",
            lambda: check_recording(
                inputs.newest_segment_end(),
                segment_intact=inputs.newest_segment_intact,
                recording_expected=inputs.recording_expected(),
                thresholds=t(),
            ),
            FaultCode.RECORDING_STALLED,
            blocking=True,
        ),
        SelfTestCheck(
            "storage",
            lambda: check_storage(inputs.storage_dir, t()),
            FaultCode.STORAGE_FAILED,
            blocking=True,
        ),
        SelfTestCheck("clock", lambda: _clock(inputs), FaultCode.CLOCK_DRIFT),
        SelfTestCheck(
            "temperature",
            lambda: check_temperature(inputs.thermal_root, t()),
            FaultCode.OVER_TEMPERATURE,
            blocking=True,
        ),
        SelfTestCheck(
            "broker",
            lambda: check_broker(inputs.broker_round_trip, t()),
            FaultCode.BROKER_UNREACHABLE,
        ),
    ]
    if inputs.ups_status is not None:
        status = inputs.ups_status
        checks.append(SelfTestCheck("ups", lambda: check_ups(status), FaultCode.UPS_COMMS_LOST))
    return checks + inputs.extra
