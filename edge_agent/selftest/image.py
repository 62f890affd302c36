"""Picture checks: pure functions over sampled frames (about one a second, downscaled).

Each returns a `CheckOutcome` with the measured value, its threshold and a sentence for the
engineer. A check that cannot judge (no picture, a picture with no detail, too few
features) says so as `not_assessed` with no value, rather than guessing either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import numpy as np
import numpy.typing as npt

from edge_agent.selftest.analysis import (
    PreparedFrame,
    cell_clipped,
    cell_texture,
    clipped_fraction,
    contrast_range,
    estimate_view_shift,
    mask_dark_fraction,
    normalised_difference,
    polygon_mask,
    prepare,
    sharpness,
    view_features,
)
from edge_agent.selftest.baseline import Baseline, measured_fps
from edge_agent.selftest.outcome import CheckOutcome, Verdict
from edge_agent.selftest.thresholds import SelfTestThresholds
from protocol.faults import FaultCode

__all__ = [
    "Polygon",
    "Sample",
    "check_black",
    "check_blur",
    "check_frozen",
    "check_moved",
    "check_obstructed",
    "check_overexposed",
    "check_privacy_masks",
    "check_signal",
    "prepare_all",
    "run_image_checks",
]

Sample = PreparedFrame | npt.NDArray[np.uint8]
Polygon = Sequence[tuple[float, float]]
"""A privacy mask: vertices as (x, y) fractions of the picture's width and height."""

#: Below this grey-level spread a picture has no detail to judge focus, motion or cover by.
MIN_DETAIL = 4.0
DEFAULTS = SelfTestThresholds()


def prepare_all(samples: Sequence[Sample]) -> list[PreparedFrame]:
    """Prepare raw frames once so several checks can share the work."""
    return [s if isinstance(s, PreparedFrame) else prepare(s) for s in samples]


def _grade(value: float, warn: float, fail: float, *, low_is_bad: bool) -> Verdict:
    if low_is_bad:
        return "fail" if value < fail else "warn" if value < warn else "pass"
    return "fail" if value > fail else "warn" if value > warn else "pass"


def _not_assessed(name: str, unit: str, fault: FaultCode, why: str) -> CheckOutcome:
    return CheckOutcome(name, "not_assessed", None, None, unit, f"not assessed: {why}", fault)


def _no_detail(frames: Sequence[PreparedFrame]) -> bool:
    return float(np.median([contrast_range(f.grey) for f in frames])) < MIN_DETAIL


def check_signal(
    frame_times: Sequence[float],
    *,
    expected_fps: float,
    now: float | None = None,
    thresholds: SelfTestThresholds = DEFAULTS,
) -> CheckOutcome:
    """Camera gives pictures at its frame rate. `frame_times` are the arrival (or stream)
    times in seconds of the frames seen during the test; `now` on the same clock."""
    name, fault, t = "camera_signal", FaultCode.CAMERA_NO_SIGNAL, thresholds
    fail_at = expected_fps * t.fps_fail_ratio
    if not frame_times:
        return CheckOutcome(name, "fail", 0.0, fail_at, "fps", "no picture from the camera", fault)
    if now is not None and now - max(frame_times) > t.signal_timeout_s:
        age = now - max(frame_times)
        msg = f"no picture for {age:.1f} s (limit {t.signal_timeout_s:g} s)"
        return CheckOutcome(name, "fail", 0.0, fail_at, "fps", msg, fault)
    fps = measured_fps(frame_times)
    if fps is None:
        msg = "only one frame received: the stream is not running"
        return CheckOutcome(name, "fail", 0.0, fail_at, "fps", msg, fault)
    verdict = _grade(fps, expected_fps * t.fps_warn_ratio, fail_at, low_is_bad=True)
    msg = f"{fps:.1f} fps of {expected_fps:.1f} expected"
    if verdict != "pass":
        msg += f" (fail below {fail_at:.1f})"
    return CheckOutcome(name, verdict, round(fps, 2), round(fail_at, 2), "fps", msg, fault)


def check_black(
    samples: Sequence[Sample], thresholds: SelfTestThresholds = DEFAULTS
) -> CheckOutcome:
    """Picture is not black: median luminance over the samples."""
    name, fault, t = "image_black", FaultCode.IMAGE_BLACK, thresholds
    frames = prepare_all(samples)
    if not frames:
        return _not_assessed(name, "luma", fault, "no picture")
    luma = float(np.median([f.grey.mean() for f in frames]))
    verdict = _grade(luma, t.black_luma_warn, t.black_luma_fail, low_is_bad=True)
    msg = f"mean luminance {luma:.0f}/255"
    msg += (
        " (picture is black)"
        if verdict == "fail"
        else " (picture is dark)"
        if verdict == "warn"
        else ""
    )
    return CheckOutcome(name, verdict, round(luma, 1), t.black_luma_fail, "luma", msg, fault)


def check_overexposed(
    samples: Sequence[Sample], thresholds: SelfTestThresholds = DEFAULTS
) -> CheckOutcome:
    """Picture is not washed out: share of clipped pixels over the samples."""
    name, fault, t = "image_overexposed", FaultCode.IMAGE_OVEREXPOSED, thresholds
    frames = prepare_all(samples)
    if not frames:
        return _not_assessed(name, "%", fault, "no picture")
    pct = float(np.median([clipped_fraction(f.grey) for f in frames])) * 100.0
    verdict = _grade(pct, t.clipped_warn_pct, t.clipped_fail_pct, low_is_bad=False)
    msg = f"{pct:.1f}% of the picture clipped white (fail above {t.clipped_fail_pct:g}%)"
    return CheckOutcome(name, verdict, round(pct, 2), t.clipped_fail_pct, "%", msg, fault)


def check_blur(
    samples: Sequence[Sample], baseline: Baseline, thresholds: SelfTestThresholds = DEFAULTS
) -> CheckOutcome:
    """Picture is in focus: sharpness as a share of the deployment baseline."""
    name, fault, t = "blur", FaultCode.BLUR, thresholds
    frames = prepare_all(samples)
    if not frames:
        return _not_assessed(name, "%", fault, "no picture")
    if _no_detail(frames):
        return _not_assessed(name, "%", fault, "the picture has no detail")
    ratio = float(np.median([sharpness(f.grey) for f in frames])) / baseline.sharpness
    pct = ratio * 100.0
    verdict = _grade(ratio, t.blur_ratio_warn, t.blur_ratio_fail, low_is_bad=True)
    msg = f"sharpness {pct:.0f}% of the deployment baseline (fail below {t.blur_ratio_fail:.0%})"
    return CheckOutcome(name, verdict, round(pct, 1), t.blur_ratio_fail * 100, "%", msg, fault)


def check_frozen(
    samples: Sequence[Sample],
    sample_times: Sequence[float],
    thresholds: SelfTestThresholds = DEFAULTS,
) -> CheckOutcome:
    """Picture is live: successive samples must differ by more than sensor noise.

    A frame counter proves nothing (an encoder can repeat one picture at full rate), so
    this compares the content of samples taken over at least `frozen_min_span_s`.
    """
    name, fault, t = "frozen", FaultCode.FROZEN, thresholds
    frames = prepare_all(samples)
    if len(frames) != len(sample_times):
        raise ValueError("one timestamp per sample is needed")
    if len(frames) < 3:
        return _not_assessed(name, "grey", fault, f"{len(frames)} samples, 3 needed")
    span = max(sample_times) - min(sample_times)
    if span < t.frozen_min_span_s:
        return _not_assessed(name, "grey", fault, f"samples span {span:.1f} s only")
    if _no_detail(frames):
        return _not_assessed(name, "grey", fault, "the picture has no detail")
    diffs = [normalised_difference(a.thumb, b.thumb) for a, b in pairwise(frames)]
    largest = max(diffs)
    if largest <= t.frozen_max_diff:
        msg = f"picture unchanged for {span:.0f} s (largest change {largest:.2f} grey levels)"
        return CheckOutcome(name, "fail", round(largest, 2), t.frozen_max_diff, "grey", msg, fault)
    msg = f"picture changes: up to {largest:.1f} grey levels between samples over {span:.0f} s"
    return CheckOutcome(name, "pass", round(largest, 2), t.frozen_max_diff, "grey", msg, fault)


def check_obstructed(
    samples: Sequence[Sample], baseline: Baseline, thresholds: SelfTestThresholds = DEFAULTS
) -> CheckOutcome:
    """No large part of the view is lost: share of grid cells whose texture collapsed
    against the reference (median over samples, so a passer-by close to the lens does
    not count). Texture is first scaled by the least-changed cells, so a picture that is
    uniformly softer or dimmer does not read as covered; cells clipped white are left to
    the exposure check."""
    name, fault, t = "view_obstructed", FaultCode.VIEW_OBSTRUCTED, thresholds
    frames = prepare_all(samples)
    if not frames:
        return _not_assessed(name, "%", fault, "no picture")
    if _no_detail(frames):
        return _not_assessed(name, "%", fault, "the picture has no detail")
    reference = np.maximum(baseline.cell_texture, 1e-9)
    lost_shares = []
    for frame in frames:
        ratio = cell_texture(frame.grey) / reference
        gain = max(float(np.percentile(ratio, 80.0)), 1e-9)
        lost = (ratio / gain < t.cell_lost_ratio) & ~cell_clipped(frame.grey)
        lost_shares.append(float(lost.mean()) * 100.0)
    pct = float(np.median(lost_shares))
    verdict = _grade(pct, t.obstructed_warn_pct, t.obstructed_fail_pct, low_is_bad=False)
    msg = (
        f"{pct:.0f}% of the view lost against the reference (fail above {t.obstructed_fail_pct:g}%)"
    )
    return CheckOutcome(name, verdict, round(pct, 1), t.obstructed_fail_pct, "%", msg, fault)


def check_moved(
    samples: Sequence[Sample], baseline: Baseline, thresholds: SelfTestThresholds = DEFAULTS
) -> CheckOutcome:
    """View still matches the reference: similarity transform by ORB features and RANSAC
    per sample, median over the samples that matched well enough."""
    name, fault, t = "view_moved", FaultCode.VIEW_MOVED, thresholds
    frames = prepare_all(samples)
    if not frames:
        return _not_assessed(name, "%", fault, "no picture")
    if _no_detail(frames):
        return _not_assessed(name, "%", fault, "the picture has no detail")
    ref = baseline.reference
    ref_features = view_features(ref)
    shifts = [estimate_view_shift(ref, f.grey, reference_features=ref_features) for f in frames]
    good = [s for s in shifts if s is not None and s.inliers >= t.moved_min_inliers]
    if len(good) * 2 < len(frames):
        why = f"only {len(good)} of {len(frames)} samples match the reference well enough"
        return _not_assessed(name, "%", fault, why)
    moved = float(np.median([s.displacement_pct for s in good]))
    rotation = float(np.median([s.rotation_deg for s in good]))
    scale = float(np.median([s.scale for s in good]))
    dx = float(np.median([s.dx_pct for s in good]))
    dy = float(np.median([s.dy_pct for s in good]))
    verdict = _grade(moved, t.moved_warn_pct, t.moved_fail_pct, low_is_bad=False)
    msg = (
        f"view moved {moved:.1f}% of the width (shift {dx:+.1f}%, {dy:+.1f}%; "
        f"rotation {rotation:+.1f} deg; zoom x{scale:.2f}); fail above {t.moved_fail_pct:g}%"
    )
    return CheckOutcome(name, verdict, round(moved, 2), t.moved_fail_pct, "%", msg, fault)


def check_privacy_masks(
    recorded: Sequence[npt.NDArray[np.uint8]],
    masks: Sequence[Polygon],
    thresholds: SelfTestThresholds = DEFAULTS,
) -> CheckOutcome:
    """Privacy masks are in effect: the masked areas of frames decoded from the recording
    are black. The value is the share of masked pixels blacked out in the worst mask."""
    name, fault, t = "privacy_masks", FaultCode.PRIVACY_MASK_INEFFECTIVE, thresholds
    if not masks:
        return CheckOutcome(name, "pass", None, None, "%", "no privacy masks in force", fault)
    if not recorded:
        return _not_assessed(name, "%", fault, "no recorded frame to inspect")
    worst, worst_index = 100.0, 0
    for frame in recorded:
        grey = frame if frame.ndim == 2 else prepare(frame).grey
        size = (int(grey.shape[1]), int(grey.shape[0]))
        for index, polygon in enumerate(masks):
            share = mask_dark_fraction(grey, polygon_mask(list(polygon), size), t.mask_dark_level)
            if share * 100.0 < worst:
                worst, worst_index = share * 100.0, index
    verdict: Verdict = "fail" if worst < t.mask_dark_min_pct else "pass"
    if verdict == "fail":
        msg = (
            f"mask {worst_index + 1} of {len(masks)} only {worst:.0f}% blacked out in the recording"
        )
    else:
        msg = f"{len(masks)} mask(s) blacked out in the recording (worst {worst:.0f}%)"
    return CheckOutcome(name, verdict, round(worst, 1), t.mask_dark_min_pct, "%", msg, fault)


def run_image_checks(
    samples: Sequence[Sample],
    *,
    sample_times: Sequence[float],
    frame_times: Sequence[float],
    baseline: Baseline,
    masks: Sequence[Polygon] = (),
    recorded: Sequence[npt.NDArray[np.uint8]] = (),
    now: float | None = None,
    thresholds: SelfTestThresholds = DEFAULTS,
) -> list[CheckOutcome]:
    """Every picture check over one set of samples, each frame prepared once.

    `samples` are the analysis frames (about one a second) taken at `sample_times`;
    `frame_times` are the times of every frame seen over the same period; `recorded` are
    frames decoded back from the recording, for the privacy-mask check.
    """
    frames = prepare_all(samples)
    return [
        check_signal(
            frame_times, expected_fps=baseline.expected_fps, now=now, thresholds=thresholds
        ),
        check_black(frames, thresholds),
        check_overexposed(frames, thresholds),
        check_blur(frames, baseline, thresholds),
        check_frozen(frames, sample_times, thresholds),
        check_obstructed(frames, baseline, thresholds),
        check_moved(frames, baseline, thresholds),
        check_privacy_masks(recorded, masks, thresholds),
    ]
