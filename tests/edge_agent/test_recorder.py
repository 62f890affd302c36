"""The segment recorder against real inputs: the sample clip as a file, the same clip
served over HTTP by a real ffmpeg server on loopback, and the synthetic scene. Footage is
decrypted with the evidence private key and compared with the source packet for packet."""

from __future__ import annotations

import asyncio
import io
import itertools
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import av
import pytest

from edge_agent.capture import SyntheticFault, SyntheticSource, open_source
from edge_agent.recorder.index import SegmentIndex
from edge_agent.recorder.recorder import (
    Recorder,
    RecorderConfig,
    RecorderState,
    RecorderStatus,
    StopReason,
)
from protocol.evidence_keys import EvidencePrivateKey, generate_evidence_key
from protocol.segment.format import SegmentSummaryInfo
from protocol.segment.reader import read_segment
from tests.harness.binaries import require_binary
from tests.harness.footage import SAMPLE_CLIP, require_sample_clip

CLIP = SAMPLE_CLIP
UNIT = "unit-rec-01"


# -- helpers shared with the other recorder and capture tests ----------------------------


def require_clip() -> Path:
    return require_sample_clip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _serving(port: int) -> bool:
    """Listening, or already serving its one client. Read from /proc: a probe connection
    would itself be taken as ffmpeg's one client."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state in {"0A", "01"} and int(local.split(":")[1], 16) == port:
                return True
    return False


class ClipServer:
    """`ffmpeg -listen 1` serving the clip as MPEG-TS over HTTP, looped, paced."""

    def __init__(self, port: int, readrate: float = 4.0) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}/live.ts"
        self.readrate = readrate
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        ffmpeg = require_binary("ffmpeg")
        cmd = [
            ffmpeg, "-hide_banner", "-loglevel", "error", "-fflags", "+genpts",
            "-readrate", str(self.readrate), "-stream_loop", "-1", "-i", str(require_clip()),
            "-an", "-c", "copy", "-f", "mpegts", "-listen", "1", self.url,
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not _serving(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("ffmpeg HTTP server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None


@pytest.fixture
def clip_server() -> Iterator[ClipServer]:
    server = ClipServer(free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def evidence_key() -> EvidencePrivateKey:
    return generate_evidence_key()


def make_recorder(
    source: Any, data_dir: Path, key: EvidencePrivateKey, **kwargs: Any
) -> tuple[Recorder, SegmentIndex, list[SegmentSummaryInfo], list[RecorderStatus]]:
    index = SegmentIndex(data_dir / "index.sqlite", unit_id=UNIT)
    sealed: list[SegmentSummaryInfo] = []
    events: list[RecorderStatus] = []
    cfg = {"unit_id": UNIT, "data_dir": data_dir, "segment_seconds": 2.0}
    cfg.update(kwargs.pop("config", {}))
    recorder = Recorder(
        source=source,
        index=index,
        evidence_key=key.public_key(),
        config=RecorderConfig(**cfg),
        on_segment=lambda summary, chain: sealed.append(summary),
        on_started=events.append,
        on_stopped=events.append,
        **kwargs,
    )
    return recorder, index, sealed, events


def decrypt(
    data_dir: Path, index: SegmentIndex, key: EvidencePrivateKey
) -> list[tuple[Any, bytes]]:
    """(index entry, decrypted fragmented MP4) for every live segment, in order."""
    out = []
    for entry in index.entries(include_deleted=False):
        with (data_dir / entry.file_name).open("rb") as f:
            decoded = read_segment(f, key, expected_unit=UNIT)
        assert decoded.header.segment_id == entry.segment_id
        out.append((entry, decoded.plaintext))
    return out


def mp4_packets(mp4: bytes) -> list[av.Packet[Any]]:
    with av.open(io.BytesIO(mp4), "r") as c:
        return [p for p in c.demux(c.streams.video[0]) if p.size]


def dts(packet: av.Packet[Any]) -> int:
    assert packet.dts is not None
    return packet.dts


def clip_packets() -> list[bytes]:
    with av.open(str(require_clip())) as c:
        return [bytes(p) for p in c.demux(c.streams.video[0]) if p.size]


def nal_units(data: bytes) -> list[bytes]:
    """NAL units of a length-prefixed (MP4/AVI avcC) H.264 access unit."""
    out, i = [], 0
    while i < len(data):
        n = int.from_bytes(data[i : i + 4], "big")
        out.append(data[i + 4 : i + 4 + n])
        i += 4 + n
    assert i == len(data), "malformed length-prefixed access unit"
    return out


def coded_pictures(data: bytes) -> list[bytes]:
    """The NAL units of an access unit that carry the picture: access unit delimiters
    and parameter sets (which an MPEG-TS hop adds in-band) left out."""
    return [n for n in nal_units(data) if n[0] & 0x1F not in (7, 8, 9)]


async def wait_for(predicate: Any, seconds: float, what: str) -> None:
    """Poll a condition the recorder's thread makes true (no event to await there)."""
    try:
        async with asyncio.timeout(seconds):
            while not predicate():  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"timed out after {seconds} s waiting for: {what}")


# -- tests ----------------------------------------------------------------------------


async def test_file_source_is_remuxed_bit_identical(
    tmp_path: Path, evidence_key: EvidencePrivateKey
) -> None:
    require_clip()
    source = open_source(f"file:{CLIP}?realtime=0")
    recorder, index, sealed, events = make_recorder(source, tmp_path, evidence_key)
    await recorder.start()
    await wait_for(lambda: len(sealed) >= 7, 30, "segments sealed")
    await recorder.stop()
    assert recorder.status.state is RecorderState.STOPPED
    assert recorder.status.reason is StopReason.REQUESTED
    assert events[0].state is RecorderState.RECORDING and events[-1].state is RecorderState.STOPPED

    reference = clip_packets()
    segments = decrypt(tmp_path, index, evidence_key)
    assert len(segments) == len(sealed) >= 7
    recorded: list[bytes] = []
    for entry, mp4 in segments:
        packets = mp4_packets(mp4)
        assert packets[0].is_keyframe, "every segment starts on a keyframe"
        assert packets[0].dts == 0, "timestamps are rebased per segment"
        assert all(dts(b) > dts(a) for a, b in itertools.pairwise(packets))
        assert entry.started_at <= entry.ended_at
        recorded += [bytes(p) for p in packets]
    # The clip loops; what was recorded is the clip's packets, byte for byte, in order.
    assert len(recorded) > len(reference)
    for n, data in enumerate(recorded):
        assert data == reference[n % len(reference)], f"packet {n} differs from the source"
    starts = [e.started_at for e, _ in segments]
    assert starts == sorted(starts)
    assert index.verify_chain().ok
    assert index.verify(tmp_path).clean
    index.close()


async def test_segments_follow_the_camera_clock(
    tmp_path: Path, evidence_key: EvidencePrivateKey
) -> None:
    """Cut on the first keyframe once the segment length is reached: the clip has a
    keyframe every 128 frames (5.12 s at 25 fps, 85 frames where it loops), so a 6 s
    segment spans two GOPs: at least 6 s and less than 6 s plus one GOP."""
    require_clip()
    source = open_source(str(CLIP), realtime=False)
    recorder, index, sealed, _ = make_recorder(
        source, tmp_path, evidence_key, config={"segment_seconds": 6.0}
    )
    await recorder.start()
    await wait_for(lambda: len(sealed) >= 3, 30, "segments sealed")
    await recorder.stop()
    for _, mp4 in decrypt(tmp_path, index, evidence_key)[:3]:
        packets = mp4_packets(mp4)
        span = float((dts(packets[-1]) - dts(packets[0])) * packets[0].time_base) + 0.04
        assert 6.0 <= span < 6.0 + 5.12
        assert sum(p.is_keyframe for p in packets) == 2
    index.close()


async def test_http_stream_is_recorded_without_reencoding(
    tmp_path: Path, evidence_key: EvidencePrivateKey, clip_server: ClipServer
) -> None:
    source = open_source(clip_server.url)
    recorder, index, sealed, _ = make_recorder(source, tmp_path, evidence_key)
    await recorder.start()
    await wait_for(lambda: len(sealed) >= 3, 30, "segments sealed from the HTTP stream")
    await recorder.stop()

    reference = [coded_pictures(p) for p in clip_packets()]
    recorded: list[list[bytes]] = []
    for entry, mp4 in decrypt(tmp_path, index, evidence_key):
        packets = mp4_packets(mp4)
        assert packets[0].is_keyframe and packets[0].dts == 0
        assert entry.segment_id in {s.segment_id for s in sealed}
        recorded += [coded_pictures(bytes(p)) for p in packets]
    # The server starts the clip from its first packet when the recorder connects.
    assert len(recorded) >= 341  # three GOPs: one whole pass of the clip
    for n, pictures in enumerate(recorded):
        assert pictures == reference[n % len(reference)], f"picture {n} differs from the source"
    index.close()


async def test_seal_now_and_a_lost_signal(tmp_path: Path, evidence_key: EvidencePrivateKey) -> None:
    source = SyntheticSource("synthetic:?width=320&height=240&fps=25")
    recorder, index, sealed, events = make_recorder(
        source, tmp_path, evidence_key, config={"segment_seconds": 60.0}
    )
    await recorder.start()
    await wait_for(lambda: recorder.status.state is RecorderState.RECORDING, 10, "recording")
    await asyncio.sleep(0.5)
    summary = await recorder.seal_now()
    assert summary is not None and not summary.truncated and summary.chunks >= 1
    await wait_for(lambda: recorder.status.segment_id is not None, 5, "next segment opened")

    source.inject(SyntheticFault.NO_SIGNAL)
    await wait_for(lambda: recorder.status.reason is StopReason.NO_SIGNAL, 10, "no signal seen")
    await wait_for(lambda: len(sealed) == 2, 5, "the open segment sealed when the signal went")
    source.clear_fault()
    await wait_for(lambda: recorder.status.state is RecorderState.RECORDING, 30, "resumed")
    await asyncio.sleep(0.3)
    await recorder.stop()
    assert [e.state for e in events].count(RecorderState.RECORDING) == 2
    segments = decrypt(tmp_path, index, evidence_key)
    assert len(segments) == 3
    for _, mp4 in segments:
        packets = mp4_packets(mp4)
        assert packets and packets[0].is_keyframe
        with av.open(io.BytesIO(mp4), "r") as c:
            frames = list(c.decode(video=0))
        assert frames and (frames[0].width, frames[0].height) == (320, 240)
    index.close()


async def test_restart_after_stop_continues_the_index(
    tmp_path: Path, evidence_key: EvidencePrivateKey
) -> None:
    source = SyntheticSource("synthetic:?width=160&height=120&fps=50&realtime=0")
    recorder, index, sealed, _ = make_recorder(
        source, tmp_path, evidence_key, config={"segment_seconds": 1.0}
    )
    for _ in range(2):
        before = len(sealed)
        await recorder.start()
        await wait_for(lambda: len(sealed) >= before + 2, 20, "segments")  # noqa: B023
        await recorder.stop()
    entries = index.entries()
    assert len(entries) == len(sealed) and all(not e.truncated for e in entries)
    assert index.verify_chain().ok and index.verify(tmp_path).clean
    index.close()


async def test_segment_times_are_wall_clock(
    tmp_path: Path, evidence_key: EvidencePrivateKey
) -> None:
    before = datetime.now(UTC)
    source = SyntheticSource("synthetic:?width=160&height=120&fps=25")
    recorder, index, sealed, _ = make_recorder(
        source, tmp_path, evidence_key, config={"segment_seconds": 0.5}
    )
    await recorder.start()
    await wait_for(lambda: len(sealed) >= 2, 10, "segments")
    await recorder.stop()
    index.close()
    after = datetime.now(UTC)
    for summary in sealed:
        assert before <= summary.started_at < summary.ended_at <= after
        assert summary.ended_at - summary.started_at < timedelta(seconds=2)
    for a, b in itertools.pairwise(sealed):
        assert b.started_at >= a.ended_at
