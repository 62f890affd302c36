"""Capture sources: URL dispatch, the synthetic scene and its faults, the looped file,
frame sampling that decodes about one picture a second, and reconnection to a real
network stream after it drops."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest

from edge_agent.backoff import Backoff
from edge_agent.capture import (
    CaptureSource,
    FileSource,
    MediaKind,
    NetworkSource,
    SignalLost,
    SourceEvent,
    SourceState,
    StreamInfo,
    SyntheticFault,
    SyntheticSource,
    UnsupportedSource,
    V4L2Source,
    open_source,
    redact_url,
)
from tests.edge_agent.test_recorder import CLIP, ClipServer, free_port, require_clip


class Collector:
    """A consumer that keeps what the capture thread hands over."""

    def __init__(self, keep: int = 0) -> None:
        self.keep = keep
        self.opened: list[StreamInfo] = []
        self.lost: list[str] = []
        self.packets: list[tuple[int, int, bool]] = []
        self.images: list[np.ndarray[Any, Any]] = []
        self.count = 0
        self.changed = threading.Event()

    def on_open(self, info: StreamInfo) -> None:
        self.opened.append(info)
        self.changed.set()

    def on_packet(self, packet: av.Packet[Any]) -> None:
        self.count += 1
        if len(self.packets) < self.keep:
            assert packet.pts is not None and packet.dts is not None
            self.packets.append((packet.pts, packet.dts, packet.is_keyframe))

    def on_frame(self, frame: av.VideoFrame) -> None:
        self.count += 1
        if len(self.images) < self.keep:
            self.images.append(frame.to_ndarray(format="bgr24"))

    def on_lost(self, reason: str) -> None:
        self.lost.append(reason)
        self.changed.set()


def wait(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def run_for(source: CaptureSource, consumer: Collector, until: Any, timeout: float = 10) -> None:
    source.start(consumer)
    try:
        wait(until, timeout)
    finally:
        source.stop()


def test_urls_choose_the_source() -> None:
    assert isinstance(open_source("rtsp://cam.example/stream"), NetworkSource)
    assert isinstance(open_source("https://cam.example/mjpeg"), NetworkSource)
    assert isinstance(open_source("/dev/video0"), V4L2Source)
    assert isinstance(open_source("v4l2:/dev/video2?width=640&height=480"), V4L2Source)
    assert isinstance(open_source("synthetic:?fault=blur"), SyntheticSource)
    assert isinstance(open_source("file:/srv/clip.avi"), FileSource)
    assert isinstance(open_source("/srv/clip.avi"), FileSource)
    for bad in ("", "ftp://x/y", "v4l2:/dev/sda", "synthetic:?width=17", "synthetic:?fps=0"):
        with pytest.raises(UnsupportedSource):
            open_source(bad)


def test_credentials_never_leave_the_url() -> None:
    url = "rtsp://admin:s3cret@10.0.0.5:554/Streaming/Channels/101"
    assert redact_url(url) == "rtsp://10.0.0.5:554/Streaming/Channels/101"
    source = open_source(url)
    assert "s3cret" not in source.name
    with pytest.raises(UnsupportedSource) as info:
        open_source("gopher://user:pw@host/")
    assert "pw" not in str(info.value)


def _scene(fault: str, frames: int = 6) -> list[np.ndarray[Any, Any]]:
    source = SyntheticSource(f"synthetic:?width=320&height=180&fps=50&realtime=0&fault={fault}")
    consumer = Collector(keep=frames)
    run_for(source, consumer, lambda: len(consumer.images) >= frames)
    assert consumer.opened[0].kind is MediaKind.FRAMES
    return consumer.images


def _sharpness(image: np.ndarray[Any, Any]) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var())


def test_synthetic_scene_moves_and_has_detail() -> None:
    images = _scene("none")
    assert images[0].shape == (180, 320, 3)
    assert not np.array_equal(images[0], images[3]), "the scene moves"
    assert _sharpness(images[0]) > 500
    assert 40 < images[0].mean() < 220


def test_synthetic_faults_give_the_intended_pictures() -> None:
    normal = _scene("none")
    black = _scene("black")
    assert all(int(img.max()) == 0 for img in black)

    frozen = _scene("frozen")
    assert all(np.array_equal(frozen[0], img) for img in frozen[1:]), "frozen repeats exactly"
    assert _sharpness(frozen[0]) > 500, "a frozen picture is still a picture"

    blurred = _scene("blur")
    assert _sharpness(blurred[0]) < _sharpness(normal[0]) / 20
    assert abs(float(blurred[0].mean()) - float(normal[0].mean())) < 15

    covered = _scene("covered")
    grey = cv2.cvtColor(covered[0], cv2.COLOR_BGR2GRAY)
    flat = np.abs(grey.astype(int) - int(np.median(grey))) <= 2
    assert flat.mean() > 0.6, "most of the view is one flat dark object"
    assert grey.mean() < normal[0].mean()


def test_no_signal_is_an_event_and_recovers() -> None:
    source = SyntheticSource(
        "synthetic:?width=160&height=120&fps=50&realtime=0",
        backoff=Backoff(base=0.05, cap=0.2, floor=0.01),
    )
    events: list[SourceEvent] = []
    source.add_listener(events.append)
    consumer = Collector()
    source.start(consumer)
    try:
        wait(lambda: source.state is SourceState.LIVE)
        source.inject(SyntheticFault.NO_SIGNAL)
        wait(lambda: source.state is SourceState.LOST)
        count = consumer.count
        time.sleep(0.3)
        assert consumer.count == count, "nothing is delivered without a signal"
        assert consumer.lost and "no signal" in consumer.lost[0]
        assert source.stats().reopens >= 1
        source.clear_fault()
        wait(lambda: source.state is SourceState.LIVE and consumer.count > count)
    finally:
        source.stop()
    states = [e.state for e in events]
    live, lost = SourceState.LIVE, SourceState.LOST
    assert states[:4] == [SourceState.STARTING, live, lost, live]
    assert states[-1] is SourceState.STOPPED
    assert len(consumer.opened) >= 2 and consumer.opened[-1].generation > 1


def test_file_source_loops_with_continuous_timestamps() -> None:
    require_clip()
    source = FileSource(f"file:{CLIP}?realtime=0", sample_interval=None)
    consumer = Collector(keep=1200)
    run_for(source, consumer, lambda: len(consumer.packets) >= 1200)
    info = consumer.opened[0]
    assert (info.codec, info.width, info.height) == ("h264", 1280, 720)
    dts = [d for _, d, _ in consumer.packets]
    assert all(b > a for a, b in itertools.pairwise(dts)), "dts never goes back"
    steps = {b - a for a, b in itertools.pairwise(dts)}
    assert steps == {2}, "the loop joins one frame after the clip's last"
    keyframes = [n for n, (_, _, key) in enumerate(consumer.packets) if key]
    assert keyframes[:6] == [0, 128, 256, 341, 469, 597]


def test_file_source_with_loops_ends_after_them_as_a_lost_signal() -> None:
    require_clip()
    source = FileSource(f"file:{CLIP}?realtime=0&loops=2", sample_interval=None)
    consumer = Collector(keep=1000)
    events: list[SourceEvent] = []
    source.add_listener(events.append)
    run_for(source, consumer, lambda: bool(consumer.lost))
    assert consumer.count == 2 * 341, "two whole passes of the clip, then nothing"
    assert consumer.lost == ["end of file after 2 passes"]
    dts = [d for _, d, _ in consumer.packets]
    assert all(b > a for a, b in itertools.pairwise(dts))
    assert [e.state for e in events][:3] == [SourceState.STARTING, SourceState.LIVE,
                                             SourceState.LOST]  # fmt: skip
    for bad in ("loops=0", "loops=two", "loops=-1"):
        with pytest.raises(UnsupportedSource, match="loops"):
            FileSource(f"file:{CLIP}?{bad}")


def test_file_source_plays_in_real_time_by_default() -> None:
    require_clip()
    source = open_source(str(CLIP), sample_interval=None)
    consumer = Collector()
    source.start(consumer)
    time.sleep(1.0)
    source.stop()
    assert 15 <= consumer.count <= 35  # 25 frames a second


def test_sampling_decodes_about_one_picture_a_second() -> None:
    require_clip()
    source = FileSource(str(CLIP), realtime=False, sample_interval=0.5)
    consumer = Collector()
    t0 = time.monotonic()
    run_for(source, consumer, lambda: consumer.count > 5000 and time.monotonic() - t0 > 1.2)
    elapsed = time.monotonic() - t0
    stats = source.stats()
    assert stats.items > 5000
    # Thousands of packets went by; only about one picture per interval was decoded.
    assert 2 <= stats.samples <= elapsed / 0.5 + 2
    frame = source.latest_frame()
    assert frame is not None and frame.image.shape == (720, 1280, 3)
    assert frame.image.dtype == np.uint8 and 100 < frame.image.mean() < 250
    assert frame.media_time is not None


def test_synthetic_latest_frame_is_sampled() -> None:
    source = SyntheticSource("synthetic:?width=320&height=180&fps=25", sample_interval=0.2)
    consumer = Collector()
    run_for(source, consumer, lambda: consumer.count >= 20)
    frame = source.latest_frame()
    assert frame is not None and frame.image.shape == (180, 320, 3)
    assert source.stats().samples <= 5
    assert 10 < source.stats().frame_rate < 40


def test_network_source_reconnects_when_the_camera_comes_back() -> None:
    """No server at first: a lost signal, retried with backoff. Then a real ffmpeg HTTP
    server appears: packets flow. Then it dies: lost again, never a crash."""
    port = free_port()
    server = ClipServer(port)
    source = NetworkSource(server.url, backoff=Backoff(base=0.1, cap=0.3, floor=0.05))
    events: list[SourceEvent] = []
    source.add_listener(events.append)
    consumer = Collector(keep=10)
    source.start(consumer)
    try:
        wait(lambda: source.state is SourceState.LOST)
        assert consumer.lost and "cannot open" in consumer.lost[0]
        server.start()
        wait(lambda: consumer.count > 50, timeout=20)
        state = source.state
        assert state is SourceState.LIVE
        assert consumer.packets[0][2], "the stream starts on a keyframe"
        server.stop()
        wait(lambda: source.state is SourceState.LOST, timeout=20)
    finally:
        server.stop()
        source.stop()
    assert [e.state for e in events].count(SourceState.LOST) >= 2


def test_missing_device_and_file_are_lost_signals_not_crashes(tmp_path: Path) -> None:
    for source in (
        V4L2Source("/dev/video99", backoff=Backoff(base=0.05, cap=0.1, floor=0.01)),
        FileSource(str(tmp_path / "nope.avi"), backoff=Backoff(base=0.05, cap=0.1, floor=0.01)),
    ):
        consumer = Collector()
        run_for(source, consumer, lambda s=source: s.state is SourceState.LOST)
        assert consumer.lost and consumer.count == 0
        assert source.state is SourceState.STOPPED


def test_signal_lost_carries_its_reason() -> None:
    err = SignalLost("no frames for 10 s")
    assert err.reason == "no frames for 10 s" and "no frames" in str(err)
