"""A clip with faces at known places, for redaction: the repository's sample footage
(`samples/concourse-720p.avi`) with face pictures from `skimage.data.lfw_subset()` (shipped
inside scikit-image, read without a network) pasted on it, scaled to 40-120 pixels and
moving along known paths, encoded with libx264 as an MP4 master.

The faces are pasted with their brightness squeezed into 64-255, so that no face pixel
is near black: on the redacted copy a dark pixel over a face is the solid fill, never the
face. `coverage` measures, from the decoded copy, the share of face-frames whose face
square is (almost) all fill, and the worst share of fill over the requester's face.

    clip = make_face_clip(tmp_path / "master.mp4", frames=100)
    clip.faces[0].box_at(10)        # (x0, y0, x1, y1) of the first face on frame 10
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from tests.harness.footage import require_sample_clip

__all__ = [
    "FILLED_LUMA",
    "Coverage",
    "FaceClip",
    "FacePath",
    "coverage",
    "decode_luma",
    "make_face_clip",
]

#: A decoded pixel at or below this luma (0-255 RGB-scale grey) is taken as black fill;
#: face pixels are pasted at 64 or brighter.
FILLED_LUMA = 32
#: A face-frame counts as covered when this share of its square is fill.
COVERED_SHARE = 0.95


@dataclass(frozen=True, slots=True)
class FacePath:
    """One face picture moving along a known path from frame `first` to `last`."""

    name: str
    picture: int  # index into skimage.data.lfw_subset()
    size: int  # pixels, square
    first: int
    last: int
    centre: Callable[[float], tuple[float, float]]  # t in 0..1 -> centre (x, y)

    def box_at(self, frame: int) -> tuple[int, int, int, int] | None:
        """The face's square (x0, y0, x1, y1) on `frame`, None when it is not on it."""
        if frame < self.first or frame > self.last:
            return None
        t = (frame - self.first) / max(1, self.last - self.first)
        cx, cy = self.centre(t)
        x0, y0 = round(cx - self.size / 2), round(cy - self.size / 2)
        return x0, y0, x0 + self.size, y0 + self.size


@dataclass(frozen=True, slots=True)
class FaceClip:
    path: Path
    frames: int
    width: int
    height: int
    frame_rate: Fraction
    faces: tuple[FacePath, ...]  # the requester and the others
    requester: FacePath
    others: tuple[FacePath, ...]

    def face_frames(self) -> int:
        """Frames x faces, the requester's left out: what the redaction must cover."""
        return sum(1 for f in self.others for i in range(self.frames) if f.box_at(i) is not None)


def _line(x0: float, y0: float, x1: float, y1: float) -> Callable[[float], tuple[float, float]]:
    return lambda t: (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t)


def _arc(
    cx: float, cy: float, rx: float, ry: float, turns: float
) -> Callable[[float], tuple[float, float]]:
    return lambda t: (
        cx + rx * math.cos(2 * math.pi * turns * t),
        cy + ry * math.sin(2 * math.pi * turns * t),
    )


def _paths(frames: int) -> tuple[FacePath, tuple[FacePath, ...]]:
    """The requester walks along the top of the picture; five others cross the rest,
    never within 100 pixels of the requester: one small and fast, one coming in and one
    leaving part way, one large on a loop, one drifting slowly."""
    last = frames - 1
    requester = FacePath("requester", 3, 90, 0, last, _line(120, 95, 1150, 110))
    others = (
        FacePath("small-fast", 7, 40, 0, last, _line(1200, 330, 80, 300)),
        FacePath("entering", 12, 60, frames // 8, last, _line(150, 620, 620, 330)),
        FacePath("large-loop", 21, 120, 0, last, _arc(820, 500, 170, 90, 0.8)),
        FacePath("leaving", 30, 75, 0, last - frames // 6, _line(420, 420, 1180, 640)),
        FacePath("slow", 44, 50, 0, last, _line(1060, 300, 1120, 380)),
    )
    return requester, others


def _face_pictures() -> npt.NDArray[np.float64]:
    import skimage.data

    faces: npt.NDArray[np.float64] = skimage.data.lfw_subset()[:100]  # the rest are not faces
    return faces


def make_face_clip(out: Path, *, frames: int = 100, crf: int = 14, start: int = 0) -> FaceClip:
    """Write the clip to `out` (MP4, H.264 yuv420p, the sample's 25 frames a second) from
    the sample footage's frames `start` onwards; `frames` at most what the sample holds
    after `start` (341 in all)."""
    import cv2

    sample = require_sample_clip()
    pictures = _face_pictures()
    requester, others = _paths(frames)
    faces = (requester, *others)
    scaled = {
        f.name: (
            64
            + 191
            * cv2.resize(pictures[f.picture], (f.size, f.size), interpolation=cv2.INTER_CUBIC).clip(
                0, 1
            )
        ).astype(np.uint8)
        for f in faces
    }
    rate = Fraction(25)
    written = 0
    with av.open(str(sample)) as source, av.open(str(out), mode="w", format="mp4") as sink:
        stream = sink.add_stream("libx264", rate=rate)
        stream.width, stream.height = 1280, 720
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        for index, frame in enumerate(source.decode(video=0)):
            if index < start:
                continue
            if written == frames:
                break
            rgb = frame.to_ndarray(format="rgb24")
            for face in faces:
                box = face.box_at(written)
                if box is not None:
                    _paste(rgb, scaled[face.name], box)
            picture = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            picture.pts = written
            picture.time_base = 1 / rate
            sink.mux(stream.encode(picture))
            written += 1
        sink.mux(stream.encode(None))
    if written != frames:
        raise ValueError(f"the sample holds {written} frames after {start}, not {frames}")
    return FaceClip(
        path=out,
        frames=frames,
        width=1280,
        height=720,
        frame_rate=rate,
        faces=faces,
        requester=requester,
        others=others,
    )


def _paste(
    rgb: npt.NDArray[np.uint8], face: npt.NDArray[np.uint8], box: tuple[int, int, int, int]
) -> None:
    x0, y0, x1, y1 = box
    h, w = rgb.shape[:2]
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if cx1 <= cx0 or cy1 <= cy0:
        return
    rgb[cy0:cy1, cx0:cx1] = face[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0, None]


def decode_luma(path: Path) -> list[npt.NDArray[np.uint8]]:
    """Every frame of the clip as a grey picture (0-255), in presentation order."""
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="gray") for f in container.decode(video=0)]


@dataclass(frozen=True, slots=True)
class Coverage:
    """How well a redacted copy hides the faces of a `FaceClip`."""

    face_frames: int  # frames x faces (requester excluded) with the face on the frame
    covered: int  # of those, with at least COVERED_SHARE of the face square filled
    missed: tuple[tuple[str, int, float], ...]  # (face, frame, share filled) not covered
    requester_worst: float  # the largest share of the requester's face filled on a frame

    @property
    def share(self) -> float:
        return self.covered / self.face_frames if self.face_frames else 0.0


def coverage(clip: FaceClip, redacted: Sequence[npt.NDArray[np.uint8]]) -> Coverage:
    """Measure the decoded redacted copy (`decode_luma`) against the known faces: a
    face-frame is covered when COVERED_SHARE of its square's pixels are black fill."""
    if len(redacted) != clip.frames:
        raise ValueError(f"the copy has {len(redacted)} frames, the clip {clip.frames}")
    face_frames = covered = 0
    missed: list[tuple[str, int, float]] = []
    worst = 0.0
    for index, luma in enumerate(redacted):
        for face in clip.faces:
            share = _filled_share(luma, face.box_at(index))
            if share is None:
                continue
            if face is clip.requester:
                worst = max(worst, share)
                continue
            face_frames += 1
            if share >= COVERED_SHARE:
                covered += 1
            else:
                missed.append((face.name, index, round(share, 3)))
    return Coverage(face_frames, covered, tuple(missed), worst)


def _filled_share(
    luma: npt.NDArray[np.uint8], box: tuple[int, int, int, int] | None
) -> float | None:
    if box is None:
        return None
    h, w = luma.shape
    x0, y0, x1, y1 = max(0, box[0]), max(0, box[1]), min(w, box[2]), min(h, box[3])
    if x1 <= x0 or y1 <= y0:
        return None
    area = luma[y0:y1, x0:x1]
    return float(np.count_nonzero(area <= FILLED_LUMA)) / area.size
