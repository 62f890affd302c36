"""The sample footage the repository carries (`samples/`): real overhead video of people
crossing a concourse, the camera source of the recorder, capture, self-test and agent
tests. It is part of the checkout, so a missing or unreadable clip fails a test (a broken
checkout), never skips it."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest

__all__ = ["SAMPLE_CLIP", "closest_clip_frame", "require_sample_clip"]

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_CLIP = REPO_ROOT / "samples" / "concourse-720p.avi"

#: The first bytes of a Git LFS pointer file, left in place of the clip by a clone that
#: treats it as LFS content without fetching it.
_LFS_POINTER = b"version https://git-lfs"


def require_sample_clip() -> Path:
    """The clip's path; the test fails with the reason when the checkout lacks it."""
    if not SAMPLE_CLIP.is_file():
        pytest.fail(
            f"the sample footage is missing from the checkout: {SAMPLE_CLIP}", pytrace=False
        )
    with SAMPLE_CLIP.open("rb") as f:
        if f.read(len(_LFS_POINTER)) == _LFS_POINTER:
            pytest.fail(f"{SAMPLE_CLIP} is a Git LFS pointer, not the footage", pytrace=False)
    return SAMPLE_CLIP


#: The size pictures are compared at: small enough to be quick, large enough to tell the
#: clip's frames apart.
_COMPARE_SIZE = (160, 90)


@functools.cache
def _clip_thumbnails() -> tuple[Any, ...]:
    import av
    import cv2

    with av.open(str(require_sample_clip())) as container:
        return tuple(
            cv2.resize(f.to_ndarray(format="gray"), _COMPARE_SIZE, interpolation=cv2.INTER_AREA)
            for f in container.decode(video=0)
        )


def closest_clip_frame(picture: bytes) -> tuple[int, float]:
    """(index, mean absolute difference in grey levels 0-255) of the frame of the sample
    clip closest to `picture` (an encoded image, e.g. JPEG), compared in grey at 160 x 90."""
    import cv2
    import numpy as np

    image = cv2.imdecode(np.frombuffer(picture, np.uint8), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise AssertionError(f"not a picture: {picture[:16]!r}")
    small = cv2.resize(image, _COMPARE_SIZE, interpolation=cv2.INTER_AREA).astype(np.int16)
    scores = [float(np.abs(small - frame).mean()) for frame in _clip_thumbnails()]
    best = min(range(len(scores)), key=scores.__getitem__)
    return best, scores[best]
