"""Reading a clip for redaction: its SHA-256, and its frames in presentation order with
PyAV (frame 0 is the first frame shown; the detector and the renderer count alike)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from controller.redaction.errors import VideoUnreadable

__all__ = ["Clip", "open_clip", "sha256_file"]

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """SHA-256 of the file's bytes, as 64 lower-case hex digits."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(slots=True)
class Clip:
    """An open clip: its video stream's picture size, a frame count (the container's
    figure, which can be missing or wrong: the frames decoded are what count) and its
    decoded frames."""

    path: Path
    width: int
    height: int
    frames_expected: int
    stream_rate: float
    _container: Any
    _stream: Any

    def frames(self) -> Iterator[Any]:
        """The decoded frames (`av.VideoFrame`), in presentation order."""
        try:
            yield from self._container.decode(self._stream)
        except av.FFmpegError as exc:
            raise VideoUnreadable(self.path, f"cannot be decoded: {exc}") from exc

    @property
    def time_base(self) -> Any:
        return self._stream.time_base

    @property
    def codec_context(self) -> Any:
        return self._stream.codec_context


@contextmanager
def open_clip(path: Path) -> Iterator[Clip]:
    """The clip at `path`, opened for reading only; `VideoUnreadable` when it is not a
    video or has a picture size H.264 4:2:0 cannot carry (odd width or height)."""
    if not path.is_file():
        raise VideoUnreadable(path, "no such file")
    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, ValueError) as exc:
        raise VideoUnreadable(path, f"not a readable video: {exc}") from exc
    try:
        if not container.streams.video:
            raise VideoUnreadable(path, "has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        width, height = stream.codec_context.width, stream.codec_context.height
        if width <= 0 or height <= 0:
            raise VideoUnreadable(path, "has no picture size")
        if width % 2 or height % 2:
            raise VideoUnreadable(
                path, f"its picture size {width}x{height} is odd: H.264 4:2:0 needs even sizes"
            )
        rate = stream.average_rate or stream.guessed_rate
        frames = stream.frames
        if not frames and stream.duration and stream.time_base and rate:
            frames = int(stream.duration * stream.time_base * rate)
        yield Clip(
            path=path,
            width=width,
            height=height,
            frames_expected=int(frames or 0),
            stream_rate=float(rate) if rate else 0.0,
            _container=container,
            _stream=stream,
        )
    finally:
        container.close()
