"""Degraded variants of the real test clip, and the self-test verdict table over them.

Each variant imitates one fault a deployed camera suffers (lens out of focus, lens cap or
dead illuminator, sun into the lens, a stuck encoder, a board over the view, a knock) and
names the one check that must fail on it. `python -m tests.edge_agent.variants` prints the
table: variant x check.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from edge_agent.selftest.baseline import Baseline, learn_baseline
from edge_agent.selftest.image import Polygon, run_image_checks
from edge_agent.selftest.outcome import CheckOutcome
from edge_agent.selftest.thresholds import SelfTestThresholds
from tests.harness.footage import SAMPLE_CLIP

Frame = npt.NDArray[np.uint8]

CLIP = SAMPLE_CLIP
#: The first seconds of the clip stand for the deployment start: the baseline is learned there.
BASELINE_SECONDS = 6.0
#: A privacy mask over the top-right corner of the view (say, a private window).
MASKS: list[Polygon] = [[(0.72, 0.0), (1.0, 0.0), (1.0, 0.32), (0.80, 0.30)]]

CHECKS = [
    "camera_signal",
    "image_black",
    "image_overexposed",
    "blur",
    "frozen",
    "view_obstructed",
    "view_moved",
    "privacy_masks",
]


@dataclass(frozen=True)
class Clip:
    """Frames sampled about once a second (as the agent samples a live stream) and the
    timestamps of every decoded frame, split into the baseline period and the test period."""

    base_frames: list[Frame]
    base_sample_times: list[float]
    base_frame_times: list[float]
    frames: list[Frame]
    sample_times: list[float]
    frame_times: list[float]


@cache
def load_clip(path: Path = CLIP) -> Clip:
    """Decode the clip with OpenCV and keep one frame a second."""
    if not path.is_file():
        raise FileNotFoundError(f"test clip not found: {path}")
    capture = cv2.VideoCapture(str(path))
    base: tuple[list[Frame], list[float], list[float]] = ([], [], [])
    test: tuple[list[Frame], list[float], list[float]] = ([], [], [])
    next_sample = 0.0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            t = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            if t <= 0 and (base[2] or test[2]):
                break  # past the last decodable frame OpenCV reports position 0
            part = base if t < BASELINE_SECONDS else test
            part[2].append(t)
            if t >= next_sample:
                part[0].append(np.asarray(frame, dtype=np.uint8))
                part[1].append(t)
                next_sample = float(np.floor(t)) + 1.0
    finally:
        capture.release()
    if len(base[0]) < 3 or len(test[0]) < 3:
        raise ValueError(
            f"{path}: too short for a self-test ({len(base[2]) + len(test[2])} frames)"
        )
    return Clip(*base, *test)


@cache
def clip_baseline(path: Path = CLIP) -> Baseline:
    clip = load_clip(path)
    return learn_baseline(clip.base_frames, frame_times=clip.base_frame_times)


# --- the faults, as transformations of real frames ------------------------------------


def blurred(frame: Frame) -> Frame:
    """Lens out of focus or a misted dome."""
    return np.asarray(cv2.GaussianBlur(frame, (0, 0), 3.0), dtype=np.uint8)


def near_black(frame: Frame) -> Frame:
    """Lens cap half on, illuminator dead at night: 6% of the light."""
    return np.asarray(cv2.convertScaleAbs(frame, alpha=0.06), dtype=np.uint8)


def overexposed(frame: Frame) -> Frame:
    """Iris stuck open or the sun in the lens."""
    return np.asarray(cv2.convertScaleAbs(frame, alpha=2.2, beta=40), dtype=np.uint8)


def covered_flat(frame: Frame) -> Frame:
    """A plain board over the left 60% of the view."""
    out = frame.copy()
    out[:, : int(frame.shape[1] * 0.6)] = (95, 100, 105)
    return out


def covered_textured(frame: Frame) -> Frame:
    """A grained board (plywood) over the left 60% of the view."""
    h, w = frame.shape[:2]
    cut = int(w * 0.6)
    yy, xx = np.mgrid[0:h, 0:cut].astype(np.float64)
    grain = 120 + 35 * np.sin(xx / 23.0 + 3.0 * np.sin(yy / 41.0)) + 10 * np.sin(yy / 7.0)
    out = frame.copy()
    out[:, :cut] = np.clip(grain, 0, 255).astype(np.uint8)[..., None]
    return out


def knocked(frame: Frame) -> Frame:
    """The camera knocked on its bracket: the view shifted 10% across and 8% down (whole
    pixels, no resampling; the strip that comes into view is mirrored scene)."""
    h, w = frame.shape[:2]
    matrix = np.array([[1, 0, -round(w * 0.10)], [0, 1, -round(h * 0.08)]], dtype=np.float32)
    moved = cv2.warpAffine(
        frame, matrix, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT
    )
    return np.asarray(moved, dtype=np.uint8)


def apply_masks(frame: Frame, masks: Sequence[Polygon] = MASKS) -> Frame:
    """What the recorder does before encoding: black out each privacy mask."""
    h, w = frame.shape[:2]
    out = frame.copy()
    for polygon in masks:
        pts = np.array([[round(x * (w - 1)), round(y * (h - 1))] for x, y in polygon], np.int32)
        cv2.fillPoly(out, [pts], (0, 0, 0))
    return out


@dataclass(frozen=True)
class Variant:
    name: str
    fails: str | None
    """The one check that must fail (None: every check passes)."""
    picture: Callable[[Frame], Frame] = lambda f: f
    frozen: bool = False
    """Repeat the first test sample for the whole period, with fresh sensor noise."""
    fps_divisor: int = 1
    """Keep one frame in this many (a stream that drops frames)."""
    masks_applied: bool = True
    description: str = field(default="", compare=False)


VARIANTS: list[Variant] = [
    Variant("clean", None, description="the real clip as recorded"),
    Variant("blurred", "blur", blurred, description="Gaussian blur, sigma 3 px"),
    Variant("near-black", "image_black", near_black, description="6% of the light"),
    Variant("overexposed", "image_overexposed", overexposed, description="gain 2.2, +40"),
    Variant("frozen", "frozen", frozen=True, description="one frame repeated, sensor noise"),
    Variant("covered-60-flat", "view_obstructed", covered_flat, description="plain board, 60%"),
    Variant("covered-60-grain", "view_obstructed", covered_textured, description="grained board"),
    Variant("knocked", "view_moved", knocked, description="view shifted 10% across, 8% down"),
    Variant("frame-drops", "camera_signal", fps_divisor=3, description="1 frame in 3 arrives"),
    Variant("masks-off", "privacy_masks", masks_applied=False, description="masks not applied"),
]


def _noisy(frame: Frame, seed: int) -> Frame:
    noise = np.random.default_rng(seed).normal(0.0, 2.0, frame.shape)
    return np.clip(frame.astype(np.float64) + noise, 0, 255).astype(np.uint8)


def evaluate(
    variant: Variant, thresholds: SelfTestThresholds | None = None, clip_path: Path = CLIP
) -> list[CheckOutcome]:
    """Run every picture check on the test period of the clip, degraded by `variant`."""
    clip = load_clip(clip_path)
    frames = [variant.picture(f) for f in clip.frames]
    if variant.frozen:
        frames = [_noisy(frames[0], seed) for seed in range(len(frames))]
    recorded = [apply_masks(f) if variant.masks_applied else f for f in frames]
    return run_image_checks(
        frames,
        sample_times=clip.sample_times,
        frame_times=clip.frame_times[:: variant.fps_divisor],
        baseline=clip_baseline(clip_path),
        masks=MASKS,
        recorded=recorded,
        thresholds=thresholds or SelfTestThresholds(),
    )


def verdict_table(
    variants: Sequence[Variant] = VARIANTS,
) -> dict[str, dict[str, CheckOutcome]]:
    return {v.name: {o.name: o for o in evaluate(v)} for v in variants}


def format_table(table: dict[str, dict[str, CheckOutcome]]) -> str:
    """Markdown table: one row per variant, each cell the verdict and measured value."""

    def cell(outcome: CheckOutcome) -> str:
        value = (
            "" if outcome.value is None else f" {outcome.value:g}{outcome.unit.replace('grey', '')}"
        )
        mark = {"pass": "pass", "warn": "warn", "fail": "**FAIL**", "not_assessed": "n/a"}[
            outcome.verdict
        ]
        return f"{mark}{value}"

    by_name = {v.name: v for v in VARIANTS}
    lines = [
        "| variant | must fail | " + " | ".join(CHECKS) + " |",
        "|---|---|" + "---|" * len(CHECKS),
    ]
    for name, outcomes in table.items():
        fails = by_name[name].fails if name in by_name else None
        cells = [cell(outcomes[c]) for c in CHECKS]
        lines.append(f"| {name} | {fails or '-'} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    base = clip_baseline()
    print(
        f"clip {CLIP.name}: baseline from the first {BASELINE_SECONDS:g} s "
        f"({base.samples} samples, {base.expected_fps:.1f} fps, sharpness {base.sharpness:.0f})"
    )
    print(format_table(verdict_table()))


if __name__ == "__main__":
    main()
