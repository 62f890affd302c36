"""Finding the faces in a master clip: the detection pass that makes a clip's first
redaction plan.

The clip is decoded once. Every `settings.every`-th frame (and the last) is scaled to the
detector's width and handed to CenterFace; the faces found are linked into tracks
(`tracking`), so that a box is on every frame between the runs too. Decoding runs in its
own thread while the detector works on the previous picture, which on a machine with
two cores keeps both busy.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from controller.redaction.detector import CenterFace
from controller.redaction.errors import MasterChanged, VideoUnreadable
from controller.redaction.geometry import Box
from controller.redaction.plan import RedactionPlan
from controller.redaction.progress import Progress
from controller.redaction.settings import DetectionSettings, MaskStyle
from controller.redaction.tracking import DetectorRun, link_tracks
from controller.redaction.video import Clip, open_clip, sha256_file

__all__ = ["analyse"]

log = logging.getLogger(__name__)

#: Pictures decoded ahead of the detector, at most.
_AHEAD = 4


def analyse(
    master: Path,
    *,
    settings: DetectionSettings | None = None,
    style: MaskStyle | None = None,
    threads: int = 1,
    progress: Progress | None = None,
) -> RedactionPlan:
    """The redaction plan of the clip at `master` as the detector finds it: every face a
    track, every track masked, no edits yet. `threads` is the detector's CPU threads.
    The master's SHA-256 is taken before and after; `MasterChanged` if they differ."""
    settings = settings or DetectionSettings()
    with open_clip(master) as clip:
        master_sha256 = sha256_file(master)
        scaled = (settings.width, _even(clip.height * settings.width / clip.width))
        detector = CenterFace(
            width=_multiple_of_32(scaled[0]), height=_multiple_of_32(scaled[1]), threads=threads
        )
        if progress is not None:
            progress.stage("finding faces", clip.frames_expected)
        decoded = _detect(clip, detector, settings, scaled, progress)
    if decoded.frames == 0:
        raise VideoUnreadable(master, "has no frames")
    after = sha256_file(master)
    if after != master_sha256:  # the plan must describe the bytes its hash names
        raise MasterChanged(master, master_sha256, after)
    frame_rate = decoded.frame_rate or clip.stream_rate
    if not frame_rate:
        raise VideoUnreadable(master, "has no frame rate or frame times")
    tracks = link_tracks(decoded.runs, settings=settings, frame_count=decoded.frames)
    log.info(
        "faces found master=%s frames=%d runs=%d tracks=%d",
        master_sha256[:16],
        decoded.frames,
        len(decoded.runs),
        len(tracks),
    )
    return RedactionPlan(
        master_sha256=master_sha256,
        width=clip.width,
        height=clip.height,
        frame_count=decoded.frames,
        frame_rate=frame_rate,
        detector=detector.description,
        detection=settings,
        style=style or MaskStyle(),
        detected=tracks,
    )


@dataclass(slots=True)
class _Decoded:
    runs: list[DetectorRun]
    frames: int
    frame_rate: float | None


@dataclass(frozen=True, slots=True)
class _Picture:
    frame: int
    rgb: npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class _End:
    frames: int
    frame_rate: float | None


@dataclass(frozen=True, slots=True)
class _Failed:
    error: BaseException


def _detect(
    clip: Clip,
    detector: CenterFace,
    settings: DetectionSettings,
    scaled: tuple[int, int],
    progress: Progress | None,
) -> _Decoded:
    pictures: queue.Queue[_Picture | _End | _Failed] = queue.Queue(maxsize=_AHEAD)
    stop = threading.Event()
    decoder = threading.Thread(
        target=_decode,
        args=(clip, settings.every, scaled, pictures, stop),
        name="redaction-decode",
        daemon=True,
    )
    decoder.start()
    canvas = np.zeros((detector.height, detector.width, 3), dtype=np.uint8)
    sx, sy = clip.width / scaled[0], clip.height / scaled[1]
    runs: list[DetectorRun] = []
    try:
        while True:
            item = pictures.get()
            if isinstance(item, _Failed):
                raise item.error
            if isinstance(item, _End):
                return _Decoded(runs=runs, frames=item.frames, frame_rate=item.frame_rate)
            canvas[: scaled[1], : scaled[0]] = item.rgb
            faces = []
            for d in detector.detect(canvas, settings.threshold):
                x0, y0, x1, y1 = d.x0 * sx, d.y0 * sy, min(d.x1, scaled[0]) * sx, d.y1 * sy
                y1 = min(y1, clip.height)
                if x1 - x0 >= 1 and y1 - y0 >= 1:
                    faces.append((Box.at(x0, y0, x1, y1), d.score))
            runs.append(DetectorRun(frame=item.frame, faces=tuple(faces)))
            if progress is not None:
                progress.done(item.frame + 1)
    finally:
        stop.set()  # a decoder waiting on a full queue sees it within 0.1 s
        decoder.join()


def _decode(
    clip: Clip,
    every: int,
    scaled: tuple[int, int],
    out: queue.Queue[_Picture | _End | _Failed],
    stop: threading.Event,
) -> None:
    """Decode every frame; send the ones the detector runs on, and the last, scaled."""
    width, height = scaled
    count = 0
    last: Any = None
    first_pts: int | None = None
    last_pts: int | None = None
    try:
        for frame in clip.frames():
            if stop.is_set():
                return
            if frame.pts is not None:
                first_pts = frame.pts if first_pts is None else first_pts
                last_pts = frame.pts
            if count % every == 0:
                _put(out, _Picture(count, _rgb(frame, width, height)), stop)
                last = None
            else:
                last = frame
            count += 1
        if last is not None:
            _put(out, _Picture(count - 1, _rgb(last, width, height)), stop)
        rate: float | None = None
        if count > 1 and first_pts is not None and last_pts is not None and last_pts > first_pts:
            span = Fraction(last_pts - first_pts) * Fraction(clip.time_base)
            rate = float((count - 1) / span)
        _put(out, _End(frames=count, frame_rate=rate), stop)
    except BaseException as exc:  # handed to the detector's thread, which raises it
        _put(out, _Failed(exc), stop)


def _put(out: queue.Queue[_Picture | _End | _Failed], item: Any, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            out.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def _rgb(frame: Any, width: int, height: int) -> npt.NDArray[np.uint8]:
    picture: npt.NDArray[np.uint8] = frame.reformat(
        width=width, height=height, format="rgb24"
    ).to_ndarray()
    return picture


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)


def _multiple_of_32(value: int) -> int:
    return math.ceil(value / 32) * 32
