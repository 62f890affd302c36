"""Crash safety: a recorder process is killed with SIGKILL at random points, again and
again, in the same data directory. Each restart seals what the last one left open. At the
end every segment decrypts (every complete chunk of a cut segment included), its footage is
the clip's packets byte for byte, and the index and its hash chain are consistent."""

from __future__ import annotations

import io
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest

from edge_agent.recorder.index import SegmentIndex
from protocol.evidence_keys import generate_evidence_key
from protocol.segment.format import SEGMENT_SUFFIX
from protocol.segment.reader import read_segment
from tests.edge_agent.test_recorder import CLIP, clip_packets, require_clip

UNIT = "unit-crash-01"
RUNS = 20
ROOT = Path(__file__).resolve().parents[2]

# The recorder as the agent runs it: file source at 8x real time, 2 s segments (one GOP
# each), small chunks so a kill often lands between chunk seals.
CHILD = r"""
import asyncio, pathlib, sys
from edge_agent.capture import open_source
from edge_agent.recorder.index import SegmentIndex
from edge_agent.recorder.recorder import Recorder, RecorderConfig
from protocol.evidence_keys import EvidencePublicKey

data, clip = pathlib.Path(sys.argv[1]), sys.argv[2]
key = EvidencePublicKey.from_json(pathlib.Path(sys.argv[3]).read_bytes())

async def main() -> None:
    index = SegmentIndex(data / "index.sqlite", unit_id="unit-crash-01")
    recorder = Recorder(
        source=open_source(f"file:{clip}?speed=8", sample_interval=None),
        index=index,
        evidence_key=key,
        config=RecorderConfig(
            unit_id="unit-crash-01", data_dir=data, segment_seconds=2.0, chunk_size=16384
        ),
    )
    await recorder.start()
    print("RECORDING", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def _packets(mp4: bytes) -> list[bytes]:
    """Whole packets of a (possibly cut) fragmented MP4. Where a kill cut a fragment,
    the demuxer flags the packet it could only read in part as corrupt: left out."""
    out: list[bytes] = []
    try:
        with av.open(io.BytesIO(mp4), "r") as c:
            for packet in c.demux(c.streams.video[0]):
                if packet.size and not packet.is_corrupt:
                    out.append(bytes(packet))
    except av.FFmpegError:
        pass  # the cut end of a segment whose last fragment was lost with its chunk
    return out


@pytest.mark.slow
def test_kill_9_at_random_points_loses_only_the_open_chunk(tmp_path: Path) -> None:
    require_clip()
    key = generate_evidence_key()
    public = tmp_path / "evidence-public.json"
    public.write_bytes(key.public_key().to_json())
    data = tmp_path / "data"
    data.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rng = random.Random(int(os.environ.get("CRASH_SEED", time.time_ns())))
    for run in range(RUNS):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(data), str(CLIP), str(public)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.strip() == b"RECORDING", f"run {run}: recorder did not start"
        time.sleep(rng.uniform(0.0, 1.0))
        child.send_signal(signal.SIGKILL)
        assert child.wait(10) == -signal.SIGKILL
        child.stdout.close()

    index = SegmentIndex(data / "index.sqlite", unit_id=UNIT)
    first = index.verify(data)  # what the next start does: seal and index the last one
    assert not first.missing and not first.altered and not first.damaged
    assert index.verify(data).clean, "nothing left to repair"
    assert index.verify_chain().ok

    entries = index.entries()
    on_disk = {p.name for p in data.glob("*" + SEGMENT_SUFFIX)}
    assert on_disk == {e.file_name for e in entries if e.deleted_at is None}
    truncated = [e for e in entries if e.truncated]
    assert len(truncated) >= RUNS // 4, "kills landed mid-segment and were sealed"

    reference = clip_packets()
    keyframe_at = {reference[n]: n for n in (0, 128, 256)}
    recovered_packets = 0
    for entry in entries:
        with (data / entry.file_name).open("rb") as f:
            segment = read_segment(f, key, expected_unit=UNIT)  # every chunk's tag checked
        assert segment.truncated == entry.truncated
        assert segment.trailer.chunks == entry.chunks
        assert len(segment.plaintext) == entry.plaintext_bytes
        packets = _packets(segment.plaintext)
        if not packets:
            assert entry.truncated, "only a cut segment may hold no whole fragment"
            continue
        start = keyframe_at[packets[0]]  # each segment starts on one of the clip's keyframes
        for n, data_ in enumerate(packets):
            assert data_ == reference[(start + n) % len(reference)]
        if entry.truncated:
            recovered_packets += len(packets)
    assert recovered_packets > 0, "cut segments kept the footage of their sealed chunks"
    index.close()
