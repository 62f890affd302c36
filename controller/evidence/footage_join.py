"""Joining a unit's consecutive segment MP4s into one MP4 per unbroken stretch of
recording, by stream copy: packets are copied as the camera encoded them, only their
timestamps moved on by the length of what came before.

Segments join when the next starts within `MAX_GAP` of the previous one's end and its
streams are the same (codec, parameter sets, picture size, time base); otherwise a new
file starts, so a recording break or a camera that changed its settings never yields a
file that plays wrongly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path

import av

__all__ = ["MAX_GAP", "JoinedFile", "SegmentClip", "join_segments", "stream_signature"]

log = logging.getLogger(__name__)

#: Longest pause between one segment's end and the next one's start that is still one run.
MAX_GAP = timedelta(seconds=1)

StreamKey = tuple[str, str, bytes, int, int, Fraction | None]


@dataclass(frozen=True)
class SegmentClip:
    """One decrypted segment, remuxed to MP4, with its recorded wall-clock times."""

    segment_id: str
    path: Path
    started_at: datetime
    ended_at: datetime


@dataclass
class JoinedFile:
    path: Path
    segments: list[SegmentClip] = field(default_factory=list)
    packets: int = 0

    @property
    def started_at(self) -> datetime:
        return self.segments[0].started_at

    @property
    def ended_at(self) -> datetime:
        return self.segments[-1].ended_at


def stream_signature(path: Path) -> tuple[StreamKey, ...]:
    """What must be equal for two MP4s to be played as one."""
    keys: list[StreamKey] = []
    with av.open(str(path)) as container:
        for s in container.streams:
            ctx = s.codec_context
            keys.append(
                (
                    s.type,
                    ctx.name,
                    bytes(ctx.extradata or b""),
                    int(getattr(ctx, "width", 0) or 0),
                    int(getattr(ctx, "height", 0) or 0),
                    s.time_base,
                )
            )
    return tuple(keys)


def _runs(clips: Sequence[SegmentClip]) -> list[list[SegmentClip]]:
    runs: list[list[SegmentClip]] = []
    previous: tuple[SegmentClip, tuple[StreamKey, ...]] | None = None
    for clip in sorted(clips, key=lambda c: c.started_at):
        signature = stream_signature(clip.path)
        joins = (
            previous is not None
            and signature == previous[1]
            and abs(clip.started_at - previous[0].ended_at) <= MAX_GAP
        )
        if joins:
            runs[-1].append(clip)
        else:
            runs.append([clip])
        previous = (clip, signature)
    return runs


def _write_run(run: Sequence[SegmentClip], out: Path) -> int:
    """Copy every packet of `run`, in order, into `out`; returns the packets written."""
    packets = 0
    offsets: dict[int, int] = {}  # per stream: where the next segment's timestamps start
    with av.open(str(out), "w", format="mp4", options={"movflags": "+faststart"}) as dst:
        mapping: dict[int, av.stream.Stream] = {}
        for clip in run:
            ends: dict[int, int] = {}
            with av.open(str(clip.path)) as src:
                if not mapping:
                    mapping = {s.index: dst.add_stream_from_template(s) for s in src.streams}
                last_step: dict[int, int] = {}
                for packet in src.demux():
                    if packet.dts is None:
                        continue
                    index = packet.stream.index
                    shift = offsets.get(index, 0)
                    step = packet.duration or last_step.get(index, 0)
                    if packet.duration:
                        last_step[index] = packet.duration
                    end = packet.dts + shift + step
                    packet.dts += shift
                    if packet.pts is not None:
                        packet.pts += shift
                    ends[index] = max(ends.get(index, end), end)
                    packet.stream = mapping[index]
                    dst.mux(packet)
                    packets += 1
            offsets.update(ends)
    return packets


def join_segments(
    clips: Sequence[SegmentClip], out_dir: Path, name_for: Callable[[SegmentClip], str]
) -> list[JoinedFile]:
    """Write one MP4 per run of `clips` into `out_dir`, named by `name_for(first clip)`."""
    files: list[JoinedFile] = []
    for run in _runs(clips):
        out = out_dir / name_for(run[0])
        stem, n = out.stem, 2
        while out.exists():  # two runs starting in the same second (a clock change)
            out = out.with_name(f"{stem}-{n}{out.suffix}")
            n += 1
        joined = JoinedFile(out, list(run), _write_run(run, out))
        log.info("joined segments=%d packets=%d file=%s", len(run), joined.packets, out.name)
        files.append(joined)
    return files
