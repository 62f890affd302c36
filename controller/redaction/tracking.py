"""From the faces found on the frames the detector ran on, to tracks: one `Track` per face
through the clip, so that its box is also on the frames in between.

Each detector run is matched to the tracks still open: a track's expected box on the
run's frame (carried on at the speed of its last two keyframes) is paired with the
detection it overlaps most (intersection over union at least `min_overlap`), or, failing
that, one whose centre is near (within three quarters of the box's size, or twice
it for a track seen once, whose speed is not known yet: a walker crossing the picture
moves about one and a half face widths in a fifth of a second) and whose size is within a
factor of two: a face that moved further than its own width between runs.
Pairs are made strongest first, one detection per track. A detection left over starts a
track; a track missed on more than `max_gap` runs in a row ends.

A track starts on the frame after the last run that did not see it and ends on the frame
before the first run that did not see it again (the clip's first and last frames at the
edges): a face can enter or leave anywhere between two runs, so the box is kept on every
frame it may be on.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

from controller.redaction.geometry import Box
from controller.redaction.plan import Keyframe, Track
from controller.redaction.settings import DetectionSettings

__all__ = ["DetectorRun", "link_tracks"]

#: A detection whose centre is this share of the box's size (its larger side) from a
#: track's expected centre may still be the same face; for a track seen once, whose speed
#: is not known yet, `_NEAR_FIRST`. Each run a track was missed on widens the reach by
#: as much again.
_NEAR = 0.75
_NEAR_FIRST = 2.0
#: Largest ratio between the sizes of a track's box and a detection for the two to match.
_SIZE_RATIO = 2.0


@dataclass(frozen=True, slots=True)
class DetectorRun:
    """The faces found on one frame: boxes in the master's pixels, with confidences."""

    frame: int
    faces: tuple[tuple[Box, float], ...]


@dataclass(slots=True)
class _Open:
    keys: list[Keyframe]
    scores: list[float]
    start: int
    misses: int = 0
    last_run: int = field(default=0)

    def expected(self, frame: int) -> Box:
        if len(self.keys) == 1:
            return self.keys[0].box
        a, b = self.keys[-2], self.keys[-1]
        return a.box.towards(b.box, (frame - a.frame) / (b.frame - a.frame))


def link_tracks(
    runs: Sequence[DetectorRun], *, settings: DetectionSettings, frame_count: int
) -> tuple[Track, ...]:
    """The tracks through a clip of `frame_count` frames, from its detector `runs` (in
    frame order)."""
    open_tracks: list[_Open] = []
    closed: list[tuple[_Open, int]] = []  # and the last frame the track may be on
    previous_run = -1
    run_frames = [run.frame for run in runs]
    for run in runs:
        if run.frame <= previous_run:
            raise ValueError(
                f"detector runs must be in frame order: {run.frame} after {previous_run}"
            )
        pairs = []
        for t, track in enumerate(open_tracks):
            expected = track.expected(run.frame)
            for d, (box, _) in enumerate(run.faces):
                reach = (_NEAR if len(track.keys) > 1 else _NEAR_FIRST) * (1 + track.misses)
                affinity = _affinity(expected, box, settings.min_overlap, reach)
                if affinity > 0:
                    pairs.append((affinity, t, d))
        pairs.sort(reverse=True)
        taken_tracks: set[int] = set()
        taken_faces: set[int] = set()
        for _, t, d in pairs:
            if t in taken_tracks or d in taken_faces:
                continue
            taken_tracks.add(t)
            taken_faces.add(d)
            box, score = run.faces[d]
            track = open_tracks[t]
            track.keys.append(Keyframe(frame=run.frame, box=box))
            track.scores.append(score)
            track.misses = 0
            track.last_run = run.frame
        still_open = []
        for t, track in enumerate(open_tracks):
            if t not in taken_tracks:
                track.misses += 1
                if track.misses > settings.max_gap:
                    closed.append((track, _first_missed_run(track, run_frames) - 1))
                    continue
            still_open.append(track)
        for d, (box, score) in enumerate(run.faces):
            if d not in taken_faces:
                still_open.append(
                    _Open(
                        keys=[Keyframe(frame=run.frame, box=box)],
                        scores=[score],
                        start=previous_run + 1,
                        last_run=run.frame,
                    )
                )
        open_tracks = still_open
        previous_run = run.frame
    for track in open_tracks:
        # Seen on the last run, the track runs to the end; missed since, it ends before the
        # first run that missed it.
        end = frame_count - 1 if track.misses == 0 else _first_missed_run(track, run_frames) - 1
        closed.append((track, end))
    closed.sort(key=lambda c: (c[0].start, c[0].keys[0].frame))
    return tuple(
        Track(
            track_id=f"face-{n}",
            origin="detected",
            label="face",
            keyframes=tuple(track.keys),
            start=track.start,
            end=min(end, frame_count - 1),
            score=round(max(track.scores), 4),
        )
        for n, (track, end) in enumerate(closed, start=1)
    )


def _affinity(expected: Box, box: Box, min_overlap: float, reach: float) -> float:
    """How strongly a detection belongs to a track: its overlap with the expected box, or
    for a nearby box of a similar size a weaker score below every overlap match; 0 for
    no match."""
    overlap = expected.iou(box)
    if overlap >= min_overlap and overlap > 0:
        return 1.0 + overlap
    ratio = max(expected.area, box.area) / min(expected.area, box.area)
    if ratio > _SIZE_RATIO**2:
        return 0.0
    (ex, ey), (bx, by) = expected.centre, box.centre
    distance = ((ex - bx) ** 2 + (ey - by) ** 2) ** 0.5
    limit = reach * max(expected.width, expected.height, box.width, box.height)
    return 1.0 - distance / limit if distance < limit else 0.0


def _first_missed_run(track: _Open, run_frames: Sequence[int]) -> int:
    """The frame of the first run after the track's last keyframe."""
    return run_frames[bisect.bisect_right(run_frames, track.last_run)]
