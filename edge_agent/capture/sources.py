"""Choose a capture source by URL."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from edge_agent.capture.base import CaptureSource, UnsupportedSource
from edge_agent.capture.stream import FileSource, NetworkSource
from edge_agent.capture.synthetic import SyntheticSource
from edge_agent.capture.v4l2 import V4L2Source

__all__ = ["open_source"]


def open_source(url: str, **kwargs: Any) -> CaptureSource:
    """A (not yet started) source for `url`:

    - ``rtsp://``, ``rtsps://``, ``http://``, ``https://``: a network camera (PyAV)
    - ``/dev/videoN`` or ``v4l2:/dev/videoN``: a local V4L2 camera (OpenCV)
    - ``synthetic:?fault=...``: the generated test scene
    - ``file:/path`` or a plain path: a video file played in a loop
    """
    if not url:
        raise UnsupportedSource(url, "empty URL")
    scheme = urlsplit(url).scheme.lower()
    if scheme in {"rtsp", "rtsps", "http", "https"}:
        return NetworkSource(url, **kwargs)
    if scheme == "v4l2" or url.startswith("/dev/video"):
        return V4L2Source(url, **kwargs)
    if scheme == "synthetic":
        return SyntheticSource(url, **kwargs)
    if scheme in {"file", ""}:
        return FileSource(url, **kwargs)
    raise UnsupportedSource(url, f"unknown scheme {scheme!r}")
