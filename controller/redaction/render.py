"""Making the redacted copy: the master decoded, every masked box of the plan filled with
solid colour (grown by the plan's margin), and the pictures encoded once with libx264
into a new MP4. Sound is left out: voices and names identify people too.

The master is only read. Its SHA-256 is taken before and after; a plan made for other
bytes is refused before anything is written, and a master that changed while it was read
discards the copy (`MasterChanged`). The copy is written beside its final name and moved
there only when complete, so a half-written copy never carries the final name.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt

from controller.redaction.errors import CopyExists, MasterChanged, PlanMismatch, VideoUnreadable
from controller.redaction.plan import RedactionPlan, Track
from controller.redaction.progress import Progress
from controller.redaction.settings import EncodeSettings
from controller.redaction.video import open_clip, sha256_file

__all__ = ["RenderResult", "fill_colour", "render"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RenderResult:
    """The redacted copy and the hashes that tie it to its master."""

    derived: Path
    derived_sha256: str
    master_sha256: str
    plan_sha256: str  # `RedactionPlan.digest()` of the plan the copy was made under
    frames: int
    bytes: int


def render(
    master: Path,
    plan: RedactionPlan,
    derived: Path,
    *,
    encode: EncodeSettings | None = None,
    progress: Progress | None = None,
) -> RenderResult:
    """Write the redacted copy of `master` under `plan` to `derived` (an MP4)."""
    encode = encode or EncodeSettings()
    if derived.resolve() == master.resolve():
        raise PlanMismatch(master, "the redacted copy cannot be written over its master")
    if derived.exists():
        raise CopyExists(derived)
    if not master.is_file():
        raise VideoUnreadable(master, "no such file")
    before = sha256_file(master)
    if before != plan.master_sha256:
        raise PlanMismatch(
            master, f"its SHA-256 is {before}, the plan was made for {plan.master_sha256}"
        )
    partial = derived.with_name(derived.name + ".part")
    try:
        frames = _encode(master, plan, partial, encode, progress)
        derived_sha256 = sha256_file(partial)
        after = sha256_file(master)
        if after != before:
            raise MasterChanged(master, before, after)
        if derived.exists():
            raise CopyExists(derived)
        os.replace(partial, derived)
    finally:
        partial.unlink(missing_ok=True)
    size = derived.stat().st_size
    log.info(
        "redacted copy written master=%s derived=%s frames=%d bytes=%d",
        before[:16],
        derived_sha256[:16],
        frames,
        size,
    )
    return RenderResult(
        derived=derived,
        derived_sha256=derived_sha256,
        master_sha256=before,
        plan_sha256=plan.digest(),
        frames=frames,
        bytes=size,
    )


#: Luma weights (red, blue) of the YCbCr matrices, by FFmpeg's colour-space number.
_MATRICES = {1: (0.2126, 0.0722), 9: (0.2627, 0.0593), 10: (0.2627, 0.0593)}
_BT601 = (0.299, 0.114)
_FULL_RANGE = 2  # AVCOL_RANGE_JPEG


def fill_colour(
    rgb: tuple[int, int, int], colorspace: int, *, full_range: bool = False
) -> tuple[int, int, int]:
    """The Y, Cb, Cr of an RGB colour in the master's colour space (FFmpeg's number: 1 is
    BT.709, 9 and 10 BT.2020; any other, untagged included, BT.601, as FFmpeg reads an
    untagged picture), limited range unless `full_range`."""
    r, g, b = (c / 255 for c in rgb)
    kr, kb = _MATRICES.get(colorspace, _BT601)
    y = kr * r + (1 - kr - kb) * g + kb * b
    cb = (b - y) / (2 * (1 - kb))
    cr = (r - y) / (2 * (1 - kr))
    if full_range:
        return round(255 * y), round(128 + 255 * cb), round(128 + 255 * cr)
    return round(16 + 219 * y), round(128 + 224 * cb), round(128 + 224 * cr)


def _encode(
    master: Path,
    plan: RedactionPlan,
    partial: Path,
    encode: EncodeSettings,
    progress: Progress | None,
) -> int:
    with open_clip(master) as clip:
        if (clip.width, clip.height) != (plan.width, plan.height):
            raise PlanMismatch(
                master,
                f"its pictures are {clip.width}x{clip.height}, "
                f"the plan's {plan.width}x{plan.height}",
            )
        if progress is not None:
            progress.stage("making the redacted copy", plan.frame_count)
        schedule = _Schedule(plan.masked_tracks())
        colour: tuple[int, int, int] | None = None
        with av.open(
            str(partial), mode="w", format="mp4", options={"movflags": "+faststart"}
        ) as out:
            stream = out.add_stream(
                "libx264", rate=Fraction(plan.frame_rate).limit_denominator(1001)
            )
            stream.width, stream.height = plan.width, plan.height
            stream.pix_fmt = "yuv420p"
            stream.time_base = clip.time_base
            stream.options = {"crf": str(encode.crf), "preset": encode.preset}
            count = 0
            for frame in clip.frames():
                if colour is None:  # the first frame: how its colours are coded
                    colour = _match_colours(frame, plan.style.fill, clip.codec_context, stream)
                if count >= plan.frame_count:
                    raise PlanMismatch(
                        master, f"it has more frames than the plan's {plan.frame_count}"
                    )
                picture = _redacted(frame, schedule.boxes(count, plan), colour)
                if frame.pts is not None:
                    picture.pts, picture.time_base = frame.pts, frame.time_base
                else:  # no frame times in the master: one frame after another
                    picture.pts, picture.time_base = count, 1 / stream.rate
                out.mux(stream.encode(picture))
                count += 1
                if progress is not None:
                    progress.done(count)
            out.mux(stream.encode(None))
        if count != plan.frame_count:
            raise PlanMismatch(master, f"it has {count} frames, the plan {plan.frame_count}")
        return count


def _match_colours(
    frame: Any, fill: tuple[int, int, int], source: Any, stream: Any
) -> tuple[int, int, int]:
    """Tag the copy's colours as the master's are tagged, and give the fill colour in
    them. A full-range picture in a "yuvj" format is converted to limited range."""
    full_range = frame.format.name == "yuv420p" and frame.color_range == _FULL_RANGE
    out = stream.codec_context
    out.colorspace = source.colorspace
    out.color_primaries = source.color_primaries
    out.color_trc = source.color_trc
    out.color_range = _FULL_RANGE if full_range else 1 if source.color_range else 0
    return fill_colour(fill, frame.colorspace, full_range=full_range)


def _redacted(
    frame: Any, boxes: Iterator[tuple[int, int, int, int]], colour: tuple[int, int, int]
) -> Any:
    """The frame as a new yuv420p picture with every box filled (on pixels at even
    coordinates, so that each box covers whole 2x2 colour samples)."""
    if frame.format.name != "yuv420p":
        frame = frame.reformat(format="yuv420p")
    # One array: the luma rows, then the Cb plane and the Cr plane, each a quarter the size.
    planes: npt.NDArray[np.uint8] = frame.to_ndarray()
    h, w = frame.height, frame.width
    luma = planes[:h]
    cb = planes[h : h + h // 4].reshape(h // 2, w // 2)
    cr = planes[h + h // 4 :].reshape(h // 2, w // 2)
    y_value, cb_value, cr_value = colour
    for x0, y0, x1, y1 in boxes:
        luma[y0:y1, x0:x1] = y_value
        cb[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2] = cb_value
        cr[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2] = cr_value
    return av.VideoFrame.from_ndarray(planes, format="yuv420p")


class _Schedule:
    """The masked tracks on each frame, frame after frame, without looking at every track
    on every frame: tracks join when their first frame comes and leave after their last."""

    def __init__(self, tracks: Sequence[Track]) -> None:
        self._waiting = sorted(tracks, key=lambda t: t.start, reverse=True)
        self._active: list[Track] = []

    def boxes(self, frame: int, plan: RedactionPlan) -> Iterator[tuple[int, int, int, int]]:
        while self._waiting and self._waiting[-1].start <= frame:
            self._active.append(self._waiting.pop())
        self._active = [t for t in self._active if t.end >= frame]
        for track in self._active:
            box = track.box_at(frame)
            if box is None:
                continue
            pixels = box.grown(plan.style.margin).pixels(plan.width, plan.height)
            if pixels is not None:
                yield pixels
