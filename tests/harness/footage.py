"""The sample footage the repository carries (`samples/`): real overhead video of people
crossing a concourse, the camera source of the recorder, capture, self-test and agent
tests. It is part of the checkout, so a missing or unreadable clip fails a test (a broken
checkout), never skips it."""

from __future__ import annotations

from pathlib import Path

import pytest

__all__ = ["SAMPLE_CLIP", "require_sample_clip"]

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
