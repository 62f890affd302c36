"""Reference pictures: one still of the camera's view, for the control room to draw privacy
masks on.

The picture is the source's latest sampled frame (about one a second, decoded for the
self-tests anyway), so taking one costs the camera nothing and never touches the recording.
It is the camera's own view, BEFORE privacy masks: masks are drawn on it, so it must show
what they will hide. It is encoded as JPEG of at most `MAX_SNAPSHOT_JPEG_BYTES`: the quality
is lowered, then the picture halved, until it fits.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import cv2
import numpy as np

from edge_agent.capture.base import CaptureError, SampledFrame
from protocol.messages import MAX_SNAPSHOT_JPEG_BYTES

__all__ = ["NoPicture", "ReferencePicture", "encode_reference", "take_reference"]

#: JPEG qualities tried in turn before the picture is made smaller.
QUALITIES = (90, 80, 65, 50)
#: The smallest side a picture is halved down to before giving up.
MIN_SIDE = 64


class NoPicture(CaptureError):
    """The camera has no recent picture to send (signal lost, not started)."""


@dataclass(frozen=True, slots=True)
class ReferencePicture:
    jpeg: bytes
    width: int
    height: int
    captured_at: datetime

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.jpeg).hexdigest()


def encode_reference(
    image: np.ndarray[Any, np.dtype[np.uint8]], *, max_bytes: int = MAX_SNAPSHOT_JPEG_BYTES
) -> tuple[bytes, int, int]:
    """(JPEG bytes, width, height) of a BGR picture, at most `max_bytes` long."""
    picture = image
    while True:
        height, width = picture.shape[:2]
        for quality in QUALITIES:
            ok, buffer = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if ok and len(buffer) <= max_bytes:
                return buffer.tobytes(), width, height
        if min(width, height) // 2 < MIN_SIDE:
            raise NoPicture(f"the picture does not fit in {max_bytes} bytes as JPEG")
        smaller = cv2.resize(picture, (width // 2, height // 2), interpolation=cv2.INTER_AREA)
        picture = np.asarray(smaller, dtype=np.uint8)


async def take_reference(
    latest: Callable[[], SampledFrame | None],
    *,
    now: Callable[[], datetime],
    max_age_s: float = 10.0,
    wait_s: float = 5.0,
) -> ReferencePicture:
    """The camera's latest picture as a `ReferencePicture`. Waits up to `wait_s` for a
    picture taken within the last `max_age_s`; raises `NoPicture` without one."""
    deadline = time.monotonic() + wait_s
    while True:
        frame = latest()
        if frame is not None and (now() - frame.captured_at).total_seconds() <= max_age_s:
            break
        if time.monotonic() >= deadline:
            if frame is None:
                raise NoPicture("the camera has given no picture since the agent started")
            age = (now() - frame.captured_at).total_seconds()
            raise NoPicture(f"the camera has given no picture for {age:.0f} s")
        await asyncio.sleep(0.2)
    jpeg, width, height = await asyncio.to_thread(encode_reference, frame.image)
    return ReferencePicture(jpeg, width, height, frame.captured_at)
