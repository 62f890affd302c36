"""Compressed sources read with PyAV: a network camera (``rtsp://``, ``http(s)://``) or a
video file played in a loop as if it were a camera (``file:`` or a plain path).

Only the first video stream is taken. Audio is dropped on purpose: public-space CCTV
does not record conversations (the Surveillance Camera Code and the ICO's guidance expect
audio off by default).
"""

from __future__ import annotations

import logging
import time
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import av

from edge_agent.backoff import Backoff
from edge_agent.capture.base import (
    CaptureSource,
    MediaKind,
    SignalLost,
    StreamInfo,
    UnsupportedSource,
)

__all__ = ["FileSource", "NetworkSource"]

log = logging.getLogger(__name__)

_RECORDABLE = {"h264", "hevc", "mjpeg"}


class _AvSource(CaptureSource):
    kind = MediaKind.PACKETS

    def __init__(
        self,
        url: str,
        *,
        open_timeout: float = 10.0,
        read_timeout: float = 5.0,  # a camera silent this long is lost
        options: dict[str, str] | None = None,
        backoff: Backoff | None = None,
        sample_interval: float | None = 1.0,
    ) -> None:
        super().__init__(url, backoff=backoff, sample_interval=sample_interval)
        self._open_timeout = open_timeout
        self._read_timeout = read_timeout
        self._options = dict(options or {})
        self._container: Any = None
        self._stream: Any = None
        self._demux: Any = None

    def _target(self) -> str:
        return self.url

    def _open(self) -> StreamInfo:
        try:
            container = av.open(
                self._target(),
                options=self._options,
                timeout=(self._open_timeout, self._read_timeout),
            )
        except (av.FFmpegError, OSError) as exc:
            raise SignalLost(f"cannot open: {exc.__class__.__name__}: {exc}") from exc
        if not container.streams.video:
            container.close()
            raise SignalLost("input has no video stream")
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        if codec not in _RECORDABLE:
            container.close()
            raise UnsupportedSource(self.url, f"video codec {codec!r} is not recordable")
        self._container, self._stream = container, stream
        self._demux = container.demux(stream)
        rate = stream.average_rate or stream.guessed_rate
        return StreamInfo(
            generation=self._next_generation(),
            kind=MediaKind.PACKETS,
            codec=codec,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            time_base=Fraction(stream.time_base or Fraction(1, 90_000)),
            frame_rate=float(rate) if rate else None,
            template=stream,
        )

    def _next_packet(self) -> av.Packet[Any] | None:
        """Next packet with a decode timestamp, or None at the end of the input."""
        try:
            for packet in self._demux:  # leaves the generator open for the next call
                dts = packet.dts
                if dts is not None and packet.size:
                    if packet.pts is None:
                        packet.pts = dts
                    return packet  # type: ignore[no-any-return]
        except av.FFmpegError as exc:
            raise SignalLost(f"read failed: {exc.__class__.__name__}: {exc}") from exc
        return None

    def _read(self) -> av.Packet[Any]:
        packet = self._next_packet()
        if packet is None:
            raise SignalLost("end of stream")
        return packet

    def _close(self) -> None:
        container, self._container, self._demux, self._stream = self._container, None, None, None
        if container is not None:
            container.close()


def _stamps(packet: av.Packet[Any]) -> tuple[int, int]:
    """(dts, pts) of a packet `_next_packet` returned: both are set there."""
    assert packet.dts is not None and packet.pts is not None
    return packet.dts, packet.pts


class NetworkSource(_AvSource):
    """``rtsp://`` (over TCP: cellular links drop UDP) or ``http(s)://`` (MJPEG, MPEG-TS,
    or any stream FFmpeg reads). Credentials in the URL are never logged."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        scheme = urlsplit(url).scheme
        options = dict(kwargs.pop("options", None) or {})
        if scheme in {"rtsp", "rtsps"}:
            options.setdefault("rtsp_transport", "tcp")
        super().__init__(url, options=options, **kwargs)


class FileSource(_AvSource):
    """A video file played in a loop with continuous timestamps, so it behaves like a
    camera. Paced in real time by default; ``?speed=8`` plays eight times faster and
    ``?realtime=0`` reads as fast as possible. ``?loops=3`` plays the file three times,
    then the signal is lost (as a camera that stops), for tests and benchmarks."""

    def __init__(
        self,
        url: str,
        *,
        realtime: bool | None = None,
        speed: float | None = None,
        loops: int | None = None,
        **kwargs: Any,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme == "file":
            path = unquote(parts.path)
            query = parse_qs(parts.query)
        elif parts.scheme in {"", None}:
            path, _, q = url.partition("?")
            query = parse_qs(q)
        else:
            raise UnsupportedSource(url, "not a file URL")
        if realtime is None:
            realtime = query.get("realtime", ["1"])[0] not in {"0", "false", "no"}
        try:
            speed = speed or float(query.get("speed", ["1"])[0])
        except ValueError as exc:
            raise UnsupportedSource(url, "speed must be a number") from exc
        if not 0 < speed <= 1000:
            raise UnsupportedSource(url, "speed must be in (0, 1000]")
        if loops is None and "loops" in query:
            try:
                loops = int(query["loops"][0])
            except ValueError as exc:
                raise UnsupportedSource(url, "loops must be a whole number") from exc
        if loops is not None and loops < 1:
            raise UnsupportedSource(url, "loops must be at least 1")
        super().__init__(url, **kwargs)
        self.path = Path(path)
        self.realtime = realtime
        self.speed = speed
        self.loops = loops
        self._passes = 0  # whole passes played since the file was opened
        self._offset = 0  # added to every timestamp, grows by one file length per loop
        self._first_dts: int | None = None
        self._last_dts: int | None = None
        self._step = 1
        self._clock0: float | None = None
        self._media0 = 0

    def _target(self) -> str:
        return str(self.path)

    def _open(self) -> StreamInfo:
        if not self.path.is_file():
            raise SignalLost(f"no such file: {self.path}")
        info = super()._open()
        self._offset = 0
        self._passes = 0
        self._first_dts = self._last_dts = None
        self._clock0 = None
        return info

    def _read(self) -> av.Packet[Any]:
        packet = self._next_packet()
        if packet is None:  # loop: rewind and carry on one frame after the last one
            if self._first_dts is None or self._last_dts is None:
                raise SignalLost("file has no video packets")
            self._passes += 1
            if self.loops is not None and self._passes >= self.loops:
                raise SignalLost(f"end of file after {self._passes} passes")
            self._offset += self._last_dts - self._first_dts + self._step
            self._first_dts = self._last_dts = None
            self._container.seek(0, stream=self._stream)
            self._demux = self._container.demux(self._stream)
            packet = self._next_packet()
            if packet is None:
                raise SignalLost("file has no video packets")
        dts: int = packet.dts  # type: ignore[assignment]  # set: see `_next_packet`
        last = self._last_dts
        if last is None:
            self._first_dts = dts
        elif dts > last:
            self._step = dts - last
        self._last_dts = dts
        offset = self._offset
        if offset:
            packet.dts = dts + offset
            packet.pts = packet.pts + offset  # type: ignore[operator]
        if self.realtime:
            self._pace(packet)
        return packet

    def _pace(self, packet: av.Packet[Any]) -> None:
        media, _ = _stamps(packet)
        now = time.monotonic()
        if self._clock0 is None:
            self._clock0, self._media0 = now, media
            return
        due = self._clock0 + float((media - self._media0) * packet.time_base) / self.speed
        if due > now:
            self._sleep(due - now)
