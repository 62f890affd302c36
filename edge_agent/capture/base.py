"""Capture sources: one interface over files, network streams, V4L2 devices and the
synthetic test scene.

Each source runs one worker thread (``capture-<scheme>``) that opens the input, reads it
and hands every item, in that same thread, to a single consumer: compressed sources hand
over ``av.Packet`` objects (recorded by remuxing, never re-encoded), raw sources hand over
``av.VideoFrame`` objects. Demuxing and muxing therefore never run on the event loop.

When the input drops, the thread reports a lost signal (to the consumer and to every
listener) and reopens it with capped exponential backoff and full jitter; a camera fault is
an event, never a crash. About once a second a frame is decoded for self-tests
(``latest_frame()``): compressed sources decode keyframes only, so a sample never costs
decoding the stream.

Errors::

    AgentError
    └── CaptureError
        ├── UnsupportedSource     a URL that no source understands
        └── SignalLost            the input cannot be opened or stopped delivering
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from fractions import Fraction
from typing import Any, ClassVar, Protocol, cast
from urllib.parse import urlsplit, urlunsplit

import av
import numpy as np

from edge_agent.backoff import Backoff
from edge_agent.errors import AgentError

__all__ = [
    "CaptureError",
    "CaptureSource",
    "MediaConsumer",
    "MediaKind",
    "SampledFrame",
    "SignalLost",
    "SourceEvent",
    "SourceState",
    "SourceStats",
    "StreamInfo",
    "UnsupportedSource",
    "redact_url",
]

log = logging.getLogger(__name__)


class CaptureError(AgentError):
    """A capture source failed."""


class UnsupportedSource(CaptureError):
    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"unsupported capture source {redact_url(url)!r}: {reason}")
        self.url = redact_url(url)
        self.reason = reason


class SignalLost(CaptureError):
    def __init__(self, reason: str) -> None:
        super().__init__(f"camera signal lost: {reason}")
        self.reason = reason


class SourceState(StrEnum):
    STARTING = "starting"
    LIVE = "live"
    LOST = "lost"
    STOPPED = "stopped"


class MediaKind(StrEnum):
    PACKETS = "packets"  # compressed (H.264, H.265, MJPEG): remuxed as they come
    FRAMES = "frames"  # raw pictures: encoded by the recorder


@dataclass(frozen=True)
class StreamInfo:
    """What an opened input delivers. `generation` grows on every (re)open: a new
    generation means the timestamps that follow do not continue the previous ones."""

    generation: int
    kind: MediaKind
    codec: str
    width: int
    height: int
    time_base: Fraction
    frame_rate: float | None
    template: Any = None  # the input av stream (packet sources): the remux template


@dataclass(frozen=True)
class SampledFrame:
    image: np.ndarray[Any, np.dtype[np.uint8]]  # BGR, H x W x 3
    captured_at: datetime  # UTC wall clock when it was read
    media_time: float | None  # seconds on the source's own clock, when it has one


@dataclass(frozen=True)
class SourceEvent:
    state: SourceState
    url: str  # credentials removed
    reason: str | None
    at: datetime


@dataclass(frozen=True)
class SourceStats:
    state: SourceState
    frame_rate: float  # measured over the last few seconds
    items: int
    samples: int  # pictures decoded for `latest_frame` (about one a second)
    reopens: int
    last_item_at: datetime | None


class MediaConsumer(Protocol):
    """Receives a source's output in the capture thread; must not block for long."""

    def on_open(self, info: StreamInfo) -> None: ...

    def on_packet(self, packet: av.Packet[Any]) -> None: ...

    def on_frame(self, frame: av.VideoFrame) -> None: ...

    def on_lost(self, reason: str) -> None: ...


Listener = Callable[[SourceEvent], None]


def redact_url(url: str) -> str:
    """The URL without user name or password, for logs and events."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def _utcnow() -> datetime:
    return datetime.now(UTC)


class CaptureSource(ABC):
    """Base of every source. Subclasses implement `_open`, `_read` and `_close`, which
    run only in the capture thread."""

    kind: ClassVar[MediaKind]

    def __init__(
        self,
        url: str,
        *,
        backoff: Backoff | None = None,
        sample_interval: float | None = 1.0,
    ) -> None:
        if sample_interval is not None and sample_interval <= 0:
            raise ValueError("sample_interval must be positive (or None to disable)")
        self.url = url
        self._backoff = backoff or Backoff(base=0.5, cap=30.0, floor=0.05)
        self._sample_interval = sample_interval
        self._stop = threading.Event()
        self._stopping = False  # mirrors `_stop` for the per-item loops: no call to read
        self._thread: threading.Thread | None = None
        self._consumer: MediaConsumer | None = None
        self._listeners: list[Listener] = []
        self._state = SourceState.STOPPED
        self._latest: SampledFrame | None = None
        self._next_sample = 0.0
        self._generation = 0
        self._items = 0
        self._samples = 0
        self._reopens = 0
        self._items_at_open = 0
        self._recent: deque[float] = deque(maxlen=256)
        self._sampler: Any = None  # keyframe-only decoder for `latest_frame`

    # -- public API (any thread) ---------------------------------------------------------

    @property
    def name(self) -> str:
        return redact_url(self.url)

    @property
    def state(self) -> SourceState:
        return self._state

    def add_listener(self, listener: Listener) -> None:
        """Called in the capture thread on every state change (use
        `loop.call_soon_threadsafe` to reach an event loop)."""
        self._listeners.append(listener)

    def start(self, consumer: MediaConsumer | None = None) -> None:
        if self._thread is not None and self._thread.is_alive():
            raise CaptureError(f"capture source {self.name} is already running")
        self._consumer = consumer
        self._stop.clear()
        self._stopping = False
        self._set_state(SourceState.STARTING, None)
        scheme = urlsplit(self.url).scheme or "file"
        self._thread = threading.Thread(target=self._run, name=f"capture-{scheme}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop reading and join the thread (blocking: call via `asyncio.to_thread`)."""
        self._stopping = True
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                raise CaptureError(f"capture thread for {self.name} did not stop in {timeout}s")
        self._thread = None

    def latest_frame(self) -> SampledFrame | None:
        """The most recent sampled picture (about one per `sample_interval`)."""
        return self._latest

    def stats(self) -> SourceStats:
        recent = list(self._recent)
        rate = 0.0
        if len(recent) >= 2 and recent[-1] > recent[0]:
            rate = (len(recent) - 1) / (recent[-1] - recent[0])
        last_at = None
        if recent:  # monotonic -> wall clock
            last_at = datetime.fromtimestamp(time.time() - (time.monotonic() - recent[-1]), UTC)
        return SourceStats(self._state, rate, self._items, self._samples, self._reopens, last_at)

    # -- subclass hooks (capture thread only) -------------------------------------------

    @abstractmethod
    def _open(self) -> StreamInfo:
        """Open the input; raise SignalLost (or any CaptureError) when it cannot."""

    @abstractmethod
    def _read(self) -> av.Packet[Any] | av.VideoFrame:
        """Next packet or frame; raise SignalLost when the input stops delivering."""

    @abstractmethod
    def _close(self) -> None: ...

    def _sample_bgr(self, frame: av.VideoFrame) -> np.ndarray[Any, np.dtype[np.uint8]]:
        return np.asarray(frame.to_ndarray(format="bgr24"), dtype=np.uint8)

    def _next_generation(self) -> int:
        self._generation += 1
        return self._generation

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopped; True when the source should stop."""
        return self._stop.wait(seconds)

    # -- the capture thread ---------------------------------------------------------------

    def _run(self) -> None:
        attempt = 0
        try:
            while not self._stop.is_set():
                try:
                    info = self._open()
                except CaptureError as exc:
                    self._lost(exc)
                    if self._sleep(self._backoff.delay(attempt)):
                        break
                    attempt += 1
                    continue
                delivered = self._pump(info)
                if delivered:
                    attempt = 0
                if not self._stop.is_set():
                    self._reopens += 1
                    if self._sleep(self._backoff.delay(attempt)):
                        break
                    attempt += 1
        except Exception:  # a bug: report it as a lost signal rather than dying silently
            log.exception("source=%s capture thread failed", self.name)
            self._notify_lost("internal error in capture")
        finally:
            self._set_state(SourceState.STOPPED, None)

    def _pump(self, info: StreamInfo) -> bool:
        """Read until stopped or the signal is lost; True when anything was delivered."""
        self._sampler = None
        self._items_at_open = self._items
        try:
            consumer = self._consumer
            if consumer is not None:
                consumer.on_open(info)
            if self.kind is MediaKind.PACKETS:
                return self._pump_packets(info, consumer)
            return self._pump_frames(consumer)
        except CaptureError as exc:
            self._lost(exc)
            return self._items_at_open != self._items
        finally:
            try:
                self._close()
            except Exception as exc:  # closing a dead stream may fail; nothing to save
                log.debug("source=%s close failed: %s", self.name, exc)

    # The two loops below run once per camera packet or picture. They keep to local
    # names and C calls; the bookkeeping `stats()` reads is an item count and a deque of
    # monotonic times (the wall-clock time of the last item is derived from those).

    def _pump_packets(self, info: StreamInfo, consumer: MediaConsumer | None) -> bool:
        read = cast("Callable[[], av.Packet[Any]]", self._read)
        stamp = self._recent.append
        deliver = consumer.on_packet if consumer is not None else None
        sampling = self._sample_interval is not None
        monotonic = time.monotonic
        while not self._stopping:
            packet = read()
            now = monotonic()
            if self._items == self._items_at_open:
                self._set_state(SourceState.LIVE, None)
            self._items += 1
            stamp(now)
            if sampling and packet.is_keyframe and now >= self._next_sample:
                self._sample_packet(packet, info)
            if deliver is not None:
                deliver(packet)
        return self._items != self._items_at_open

    def _pump_frames(self, consumer: MediaConsumer | None) -> bool:
        read = cast("Callable[[], av.VideoFrame]", self._read)
        stamp = self._recent.append
        deliver = consumer.on_frame if consumer is not None else None
        sampling = self._sample_interval is not None
        monotonic = time.monotonic
        while not self._stopping:
            frame = read()
            now = monotonic()
            if self._items == self._items_at_open:
                self._set_state(SourceState.LIVE, None)
            self._items += 1
            stamp(now)
            if sampling and now >= self._next_sample:
                self._store_sample(self._sample_bgr(frame), frame.time)
            if deliver is not None:
                deliver(frame)
        return self._items != self._items_at_open

    def _lost(self, exc: CaptureError) -> None:
        reason = exc.reason if isinstance(exc, SignalLost) else str(exc)
        if self._state is not SourceState.LOST:
            log.warning("source=%s fault=camera_no_signal reason=%s", self.name, reason)
        self._notify_lost(reason)

    def _notify_lost(self, reason: str) -> None:
        was_lost = self._state is SourceState.LOST
        self._set_state(SourceState.LOST, reason)
        if not was_lost and self._consumer is not None:
            self._consumer.on_lost(reason)

    def _set_state(self, state: SourceState, reason: str | None) -> None:
        if state is self._state:
            return
        self._state = state
        event = SourceEvent(state, self.name, reason, _utcnow())
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("source=%s listener failed", self.name)

    # -- sampling ---------------------------------------------------------------------------

    def _store_sample(
        self, image: np.ndarray[Any, np.dtype[np.uint8]], media: float | None
    ) -> None:
        assert self._sample_interval is not None
        self._next_sample = time.monotonic() + self._sample_interval
        self._samples += 1
        self._latest = SampledFrame(image, _utcnow(), media)

    def _sample_packet(self, packet: av.Packet[Any], info: StreamInfo) -> None:
        """Decode a keyframe for `latest_frame` (called when a sample is due)."""
        try:
            if self._sampler is None:
                template = info.template
                ctx = av.CodecContext.create(info.codec, "r")
                if template is not None and template.codec_context.extradata:
                    ctx.extradata = template.codec_context.extradata
                ctx.skip_frame = "NONKEY"
                self._sampler = ctx
            frames = self._sampler.decode(packet)
            if not frames:  # decoders with a reorder delay give the picture on drain
                frames = self._sampler.decode(None)
                self._sampler.flush_buffers()
        except av.FFmpegError as exc:
            log.debug("source=%s sample decode failed: %s", self.name, exc)
            self._sampler = None
            return
        if frames:
            media = float(packet.pts * packet.time_base) if packet.pts is not None else None
            self._store_sample(self._sample_bgr(frames[-1]), media)
