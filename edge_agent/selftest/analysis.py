"""Image measurements behind the self-test's picture checks.

Pure numpy/OpenCV over BGR frames. Every measurement works on a downscaled grey copy made
once per sampled frame (`prepare`), so a self-test costs a few tens of milliseconds per
sample on a Raspberry-Pi class unit, never a full-resolution pass over every frame.

Measurements that compare a picture with the deployment reference (sharpness, texture per
grid cell, frame difference) are contrast-normalised: a picture that is only darker or
brighter than usual is reported by the exposure checks, not also as blur, obstruction or a
frozen picture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

__all__ = [
    "ANALYSIS_WIDTH",
    "GRID_COLS",
    "GRID_ROWS",
    "PreparedFrame",
    "ViewShift",
    "cell_clipped",
    "cell_texture",
    "clipped_fraction",
    "contrast_range",
    "estimate_view_shift",
    "mask_dark_fraction",
    "normalised_difference",
    "prepare",
    "sharpness",
    "view_features",
]

GreyImage = npt.NDArray[np.uint8]
FloatArray = npt.NDArray[np.float64]

#: Width of the grey copy every measurement works on (height keeps the aspect ratio).
ANALYSIS_WIDTH = 640
#: Width of the small copy used to compare pictures over time.
THUMB_WIDTH = 160
#: Grid used to find which part of the view is lost.
GRID_COLS, GRID_ROWS = 8, 6
#: A pixel at or above this grey level is clipped (no detail left).
CLIP_LEVEL = 250

_CLAHE = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))


@dataclass(frozen=True, slots=True)
class PreparedFrame:
    """One sampled frame, reduced once for every measurement."""

    grey: GreyImage
    """Grey copy `ANALYSIS_WIDTH` pixels wide."""
    thumb: GreyImage
    """Grey copy `THUMB_WIDTH` pixels wide, for comparisons over time."""
    source_size: tuple[int, int]
    """(width, height) of the frame as decoded."""


def _resize_width(image: npt.NDArray[np.uint8], width: int) -> GreyImage:
    h, w = image.shape[:2]
    height = max(1, round(h * width / w))
    return np.asarray(
        cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA), dtype=np.uint8
    )


def to_grey(frame: npt.NDArray[np.uint8]) -> GreyImage:
    """Grey (luma) copy of a BGR or already grey frame."""
    if frame.ndim == 2:
        return frame
    if frame.ndim == 3 and frame.shape[2] == 3:
        return np.asarray(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), dtype=np.uint8)
    raise ValueError(f"expected a BGR or grey frame, got shape {frame.shape}")


def prepare(frame: npt.NDArray[np.uint8]) -> PreparedFrame:
    """Reduce a decoded frame to what the checks need."""
    if frame.dtype != np.uint8 or frame.size == 0:
        raise ValueError(f"expected a non-empty uint8 frame, got {frame.dtype} {frame.shape}")
    grey = to_grey(frame)
    small = _resize_width(grey, ANALYSIS_WIDTH) if grey.shape[1] != ANALYSIS_WIDTH else grey
    return PreparedFrame(
        grey=small,
        thumb=_resize_width(small, THUMB_WIDTH),
        source_size=(int(frame.shape[1]), int(frame.shape[0])),
    )


def clipped_fraction(grey: GreyImage) -> float:
    """Fraction (0..1) of pixels so bright that they hold no detail."""
    return float(np.count_nonzero(grey >= CLIP_LEVEL)) / grey.size


def contrast_range(grey: GreyImage) -> float:
    """Spread of grey levels between the 2nd and 98th percentile (never below 1)."""
    lo, hi = np.percentile(grey, (2.0, 98.0))
    return max(1.0, float(hi - lo))


def _laplacian(grey: GreyImage) -> FloatArray:
    return np.asarray(cv2.Laplacian(grey.astype(np.float64), cv2.CV_64F, ksize=3), np.float64)


def _cells(shape: tuple[int, ...]) -> list[tuple[slice, slice]]:
    h, w = shape[:2]
    ys = np.linspace(0, h, GRID_ROWS + 1).astype(int)
    xs = np.linspace(0, w, GRID_COLS + 1).astype(int)
    return [
        (slice(ys[r], ys[r + 1]), slice(xs[c], xs[c + 1]))
        for r in range(GRID_ROWS)
        for c in range(GRID_COLS)
    ]


def cell_texture(grey: GreyImage) -> FloatArray:
    """Edge energy of each grid cell (row-major), relative to the picture's contrast.

    Mean absolute Laplacian per cell divided by the picture's grey-level spread: a board,
    a bag or spray paint over the lens flattens the cells it covers, while a uniformly
    darker, brighter or softer picture scales every cell alike.
    """
    lap = np.abs(_laplacian(grey))
    spread = contrast_range(grey)
    return np.array([float(lap[cell].mean()) / spread for cell in _cells(grey.shape)])


def cell_clipped(grey: GreyImage, max_fraction: float = 0.5) -> npt.NDArray[np.bool_]:
    """Cells (row-major) where more than `max_fraction` of the pixels are clipped: their
    texture is gone to over-exposure, which the exposure check reports."""
    clipped = grey >= CLIP_LEVEL
    out: npt.NDArray[np.bool_] = np.array(
        [float(clipped[cell].mean()) > max_fraction for cell in _cells(grey.shape)]
    )
    return out


def sharpness(grey: GreyImage) -> float:
    """Focus measure: variance of the Laplacian, contrast-normalised, robust to occlusion.

    Computed per grid cell and summarised by the 90th percentile, so a part of the view that
    is covered does not read as blur; divided by the squared contrast spread so exposure
    changes do not either. Only a comparison with the deployment baseline means anything.
    """
    lap = _laplacian(grey)
    spread = contrast_range(grey)
    per_cell = [float(lap[cell].var()) for cell in _cells(grey.shape)]
    return float(np.percentile(per_cell, 90.0)) / (spread * spread) * 1e4


def normalised_difference(a: GreyImage, b: GreyImage) -> float:
    """Mean absolute difference of two small grey pictures after stretching each to its
    own contrast range (grey levels of a 0..255 picture). Sensor noise is averaged away by
    the downscale; a live scene differs by several levels, a repeated picture by well
    under one."""

    def stretch(img: GreyImage) -> FloatArray:
        lo, hi = np.percentile(img, (2.0, 98.0))
        span = max(1.0, float(hi - lo))
        return (img.astype(np.float64) - float(lo)) * (255.0 / span)

    if a.shape != b.shape:
        raise ValueError(f"pictures differ in size: {a.shape} vs {b.shape}")
    return float(np.mean(np.abs(stretch(a) - stretch(b))))


@dataclass(frozen=True, slots=True)
class ViewShift:
    """How the view moved against the reference: a similarity transform."""

    dx_pct: float
    """Horizontal shift of the picture centre, % of the width."""
    dy_pct: float
    """Vertical shift of the picture centre, % of the width."""
    rotation_deg: float
    scale: float
    displacement_pct: float
    """Mean displacement of the corners and centre, % of the width: one number that grows
    with a shift, a rotation or a zoom alike."""
    inliers: int


Features = tuple[list[cv2.KeyPoint], npt.NDArray[np.uint8] | None]


def view_features(grey: GreyImage) -> Features:
    """ORB features of a picture; compute the reference's once for many comparisons."""
    return _features(grey)


def _features(grey: GreyImage) -> Features:
    # Stretch then equalise locally so a dim or washed-out picture still yields corners.
    lo, hi = float(grey.min()), float(grey.max())
    stretched = np.clip((grey - lo) * (255.0 / max(hi - lo, 1.0)), 0, 255).astype(np.uint8)
    orb = cv2.ORB.create(nfeatures=3000)
    keypoints, descriptors = orb.detectAndCompute(_CLAHE.apply(stretched), None)
    return list(keypoints), descriptors


def estimate_view_shift(
    reference: GreyImage, current: GreyImage, *, reference_features: Features | None = None
) -> ViewShift | None:
    """Similarity transform from reference to current view by ORB features and RANSAC,
    or None when too few features match to say (a black or covered picture)."""
    if reference.shape != current.shape:
        size = (reference.shape[1], reference.shape[0])
        current = np.asarray(cv2.resize(current, size, interpolation=cv2.INTER_AREA), np.uint8)
    k_ref, d_ref = reference_features or _features(reference)
    k_cur, d_cur = _features(current)
    if d_ref is None or d_cur is None or len(k_ref) < 8 or len(k_cur) < 8:
        return None
    matches = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(d_ref, d_cur)
    if len(matches) < 8:
        return None
    src = np.array([k_ref[m.queryIdx].pt for m in matches], dtype=np.float32)
    dst = np.array([k_cur[m.trainIdx].pt for m in matches], dtype=np.float32)
    matrix, inlier_mask = cv2.estimateAffinePartial2D(
        src, dst, method=cv2.RANSAC, ransacReprojThreshold=2.0, maxIters=5000, confidence=0.999
    )
    if matrix is None or inlier_mask is None:
        return None
    h, w = reference.shape[:2]
    points = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1], [w / 2, h / 2, 1]], float)
    moved = points @ np.asarray(matrix, float).T
    displacement = np.hypot(*(moved - points[:, :2]).T)
    centre = moved[4] - points[4, :2]
    return ViewShift(
        dx_pct=float(centre[0]) / w * 100.0,
        dy_pct=float(centre[1]) / w * 100.0,
        rotation_deg=math.degrees(math.atan2(matrix[1, 0], matrix[0, 0])),
        scale=math.hypot(matrix[0, 0], matrix[1, 0]),
        displacement_pct=float(displacement.mean()) / w * 100.0,
        inliers=int(inlier_mask.sum()),
    )


def polygon_mask(
    polygon: list[tuple[float, float]], size: tuple[int, int], erode_px: int = 2
) -> npt.NDArray[np.bool_]:
    """Boolean mask of a normalised polygon (0..1 coordinates) on a (width, height) image,
    shrunk by `erode_px` so compression bleeding at the edge does not count."""
    w, h = size
    pts = np.array([[round(x * (w - 1)), round(y * (h - 1))] for x, y in polygon], np.int32)
    canvas = np.zeros((h, w), np.uint8)
    cv2.fillPoly(canvas, [pts], 255)
    if erode_px > 0:
        kernel = np.ones((2 * erode_px + 1, 2 * erode_px + 1), np.uint8)
        canvas = np.asarray(cv2.erode(canvas, kernel), dtype=np.uint8)
    out: npt.NDArray[np.bool_] = canvas > 0
    return out


def mask_dark_fraction(grey: GreyImage, mask: npt.NDArray[np.bool_], dark_level: int) -> float:
    """Fraction (0..1) of the masked pixels at or below `dark_level`; 1.0 for an empty mask."""
    count = int(np.count_nonzero(mask))
    if count == 0:
        return 1.0
    return float(np.count_nonzero(grey[mask] <= dark_level)) / count
