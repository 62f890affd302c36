"""The redaction plan, its edits and the tracker, without video: a reviewer's box follows
its keyframes, every edit is an event with who and when, the default masks everyone but
the un-masked, and a stored plan whose edits do not replay is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from controller.redaction import (
    AddBox,
    Box,
    Confirm,
    DeleteKeyframe,
    DetectionSettings,
    EditRefused,
    Keyframe,
    Mask,
    MaskStyle,
    ProgressMeter,
    RedactionPlan,
    RemoveBox,
    RestoreBox,
    SetKeyframe,
    Track,
    UnknownTrack,
    Unmask,
)
from controller.redaction.errors import JobCancelled
from controller.redaction.render import fill_colour
from controller.redaction.tracking import DetectorRun, link_tracks


def _now() -> datetime:
    return datetime.now(UTC)


_NOW = _now()


def _face(track_id: str, *keys: tuple[int, float, float], size: float = 40) -> Track:
    keyframes = tuple(Keyframe(frame=f, box=Box.at(x, y, x + size, y + size)) for f, x, y in keys)
    return Track(
        track_id=track_id,
        origin="detected",
        keyframes=keyframes,
        start=keyframes[0].frame,
        end=keyframes[-1].frame,
        score=0.9,
    )


def _plan(*tracks: Track, frames: int = 100) -> RedactionPlan:
    return RedactionPlan(
        master_sha256="ab" * 32,
        width=1280,
        height=720,
        frame_count=frames,
        frame_rate=25.0,
        detector="CenterFace (test)",
        detection=DetectionSettings(),
        detected=tracks,
    )


def test_a_reviewers_box_follows_its_keyframes_and_only_between_them() -> None:
    at = _now()
    plan = _plan().apply(
        AddBox(
            at=at,
            by="dc-alice",
            track_id="box-1",
            label="plate",
            keyframes=(
                Keyframe(frame=10, box=Box.at(100, 200, 180, 240)),
                Keyframe(frame=30, box=Box.at(500, 300, 620, 360)),
                Keyframe(frame=40, box=Box.at(500, 400, 620, 460)),
            ),
        )
    )
    box = plan.track("box-1")
    assert box.box_at(9) is None and box.box_at(41) is None
    assert box.box_at(10) == Box.at(100, 200, 180, 240)
    assert box.box_at(20) == Box.at(300, 250, 400, 300)  # half way from frame 10 to 30
    assert box.box_at(35) == Box.at(500, 350, 620, 410)  # half way from frame 30 to 40
    assert [t for t, _ in plan.boxes_at(20)] == ["box-1"]
    # The reviewer moves it on frame 20: the path bends there, the rest stays.
    moved = plan.apply(
        SetKeyframe(
            at=at, by="dc-alice", track_id="box-1", frame=20, box=Box.at(200, 100, 280, 140)
        )
    )
    box = moved.track("box-1")
    assert box.box_at(15) == Box.at(150, 150, 230, 190)
    assert box.box_at(35) == Box.at(500, 350, 620, 410)
    # Taking the last keyframe away ends the box at frame 30.
    shorter = moved.apply(DeleteKeyframe(at=at, by="dc-alice", track_id="box-1", frame=40))
    assert shorter.track("box-1").box_at(31) is None
    assert shorter.track("box-1").box_at(30) == Box.at(500, 300, 620, 360)


def test_a_detected_track_carries_on_at_its_speed_between_runs_and_at_its_ends() -> None:
    track = _face("face-1", (10, 100, 100), (15, 150, 100)).model_copy(
        update={"start": 6, "end": 19}
    )
    assert track.box_at(12) == Box.at(120, 100, 160, 140)
    assert track.box_at(6) == Box.at(60, 100, 100, 140)  # before the first run that saw it
    assert track.box_at(19) == Box.at(190, 100, 230, 140)
    assert track.box_at(5) is None and track.box_at(20) is None


def test_everyone_is_masked_but_the_unmasked_and_every_edit_is_an_event() -> None:
    plan = _plan(
        _face("face-1", (0, 100, 100), (50, 200, 100)),
        _face("face-2", (0, 600, 300), (50, 640, 300)),
        _face("face-3", (0, 900, 500), (50, 900, 520)),
    )
    assert [t.track_id for t in plan.masked_tracks()] == ["face-1", "face-2", "face-3"]
    t0 = _now()
    plan = plan.apply(Unmask(at=t0, by="dc-alice", track_id="face-2"))
    plan = plan.apply(
        RemoveBox(at=t0 + timedelta(seconds=1), by="dc-bob", track_id="face-3", reason="a poster")
    )
    assert [t.track_id for t in plan.masked_tracks()] == ["face-1"]
    assert not plan.is_masked("face-2") and not plan.is_masked("face-3")
    assert plan.state.unmasked == {"face-2": "the requester"}
    assert plan.state.removed == {"face-3": "a poster"}
    assert [(e.kind, e.by, e.at) for e in plan.edits] == [
        ("unmask", "dc-alice", t0),
        ("remove_box", "dc-bob", t0 + timedelta(seconds=1)),
    ]
    assert [e.describe() for e in plan.edits] == [
        "Left box face-2 un-masked: the requester.",
        "Removed box face-3: a poster.",
    ]
    # Undone, with the undoing recorded too.
    t2 = t0 + timedelta(seconds=2)
    plan = plan.apply(Mask(at=t2, by="dc-alice", track_id="face-2"))
    plan = plan.apply(RestoreBox(at=t2, by="dc-alice", track_id="face-3"))
    assert len(plan.masked_tracks()) == 3
    assert [e.kind for e in plan.edits] == ["unmask", "remove_box", "mask", "restore_box"]


def test_the_plan_is_stored_as_json_and_replayed_when_loaded() -> None:
    plan = _plan(_face("face-1", (0, 100, 100), (50, 200, 100)))
    plan = plan.apply(Unmask(at=_now(), by="dc-alice", track_id="face-1"))
    plan = plan.apply(
        AddBox(
            at=_now(),
            by="dc-alice",
            track_id=plan.next_box_id(),
            label="tattoo",
            keyframes=(Keyframe(frame=5, box=Box.at(10, 10, 30, 30)),),
        )
    )
    loaded = RedactionPlan.model_validate_json(plan.model_dump_json())
    assert loaded == plan
    assert loaded.state == plan.state
    assert loaded.next_box_id() == "box-2"
    # An edit that cannot apply (masking a face that was never un-masked) is refused.
    stored = plan.model_dump(mode="json")
    stored["edits"][0] = {**stored["edits"][0], "kind": "mask"}
    del stored["edits"][0]["reason"]
    with pytest.raises(ValidationError, match="is not un-masked"):
        RedactionPlan.model_validate(stored)


def test_confirmation_is_withdrawn_by_a_later_edit() -> None:
    plan = _plan(_face("face-1", (0, 100, 100), (50, 200, 100)))
    assert plan.confirmed is None
    confirmed = plan.apply(Confirm(at=_now(), by="dc-alice"))
    assert confirmed.confirmed is not None and confirmed.confirmed.by == "dc-alice"
    with pytest.raises(EditRefused, match="already confirmed"):
        confirmed.apply(Confirm(at=_now(), by="dc-bob"))
    edited = confirmed.apply(Unmask(at=_now(), by="dc-bob", track_id="face-1"))
    assert edited.confirmed is None
    assert edited.apply(Confirm(at=_now(), by="dc-bob")).confirmed is not None


@pytest.mark.parametrize(
    ("edit", "error", "message"),
    [
        (Unmask(at=_NOW, by="x", track_id="face-9"), UnknownTrack, "face-9"),
        (Mask(at=_NOW, by="x", track_id="face-1"), EditRefused, "not un-masked"),
        (RestoreBox(at=_NOW, by="x", track_id="face-1"), EditRefused, "not removed"),
        (
            DeleteKeyframe(at=_NOW, by="x", track_id="face-1", frame=7),
            EditRefused,
            "no keyframe on frame 7",
        ),
        (
            SetKeyframe(at=_NOW, by="x", track_id="face-1", frame=100, box=Box.at(0, 0, 9, 9)),
            EditRefused,
            "past the clip's last",
        ),
        (
            SetKeyframe(
                at=_NOW,
                by="x",
                track_id="face-1",
                frame=3,
                box=Box.at(1300, 10, 1400, 90),
            ),
            EditRefused,
            "off the picture",
        ),
    ],
)
def test_edits_that_cannot_apply_are_refused_with_the_reason(
    edit: SetKeyframe | DeleteKeyframe | Mask | RestoreBox | Unmask,
    error: type[Exception],
    message: str,
) -> None:
    plan = _plan(_face("face-1", (0, 100, 100), (50, 200, 100)))
    with pytest.raises(error, match=message):
        plan.apply(edit)
    assert plan.edits == ()


def test_a_drawn_box_is_removed_not_unmasked_and_edits_keep_their_order_in_time() -> None:
    at = _now()
    plan = _plan().apply(
        AddBox(
            at=at,
            by="dc-alice",
            track_id="box-1",
            label="person",
            keyframes=(Keyframe(frame=0, box=Box.at(0, 0, 50, 50)),),
        )
    )
    with pytest.raises(EditRefused, match="remove it instead"):
        plan.apply(Unmask(at=at, by="dc-alice", track_id="box-1"))
    with pytest.raises(EditRefused, match="only keyframe"):
        plan.apply(DeleteKeyframe(at=at, by="dc-alice", track_id="box-1", frame=0))
    with pytest.raises(EditRefused, match="dated before"):
        plan.apply(
            RemoveBox(at=at - timedelta(minutes=1), by="dc-alice", track_id="box-1", reason="x")
        )
    with pytest.raises(ValidationError):
        AddBox(at=at, by="dc-alice", track_id="face-3", label="person", keyframes=())


def test_a_box_must_have_its_edges_in_order_and_fills_whole_colour_samples() -> None:
    with pytest.raises(ValidationError, match="right edge right of its left"):
        Box.at(10, 10, 5, 20)
    with pytest.raises(ValidationError, match="finite"):
        Box.at(0, 0, float("inf"), 5)
    assert Box.at(11.5, 3.2, 20.1, 9.9).pixels(1280, 720) == (10, 2, 22, 10)
    assert Box.at(-30, -30, 20, 20).grown(0.5).pixels(1280, 720) == (0, 0, 46, 46)
    assert Box.at(1300, 0, 1400, 10).pixels(1280, 720) is None
    with pytest.raises(ValidationError):
        MaskStyle(fill=(0, 0, 256))


def test_the_fill_colour_follows_the_masters_colour_coding() -> None:
    assert fill_colour((0, 0, 0), 2) == (16, 128, 128)  # untagged: BT.601, limited
    assert fill_colour((255, 255, 255), 1) == (235, 128, 128)
    assert fill_colour((0, 0, 0), 1, full_range=True) == (0, 128, 128)
    assert fill_colour((255, 0, 0), 6) == (81, 90, 240)  # BT.601 red
    assert fill_colour((255, 0, 0), 1) == (63, 102, 240)  # BT.709 red


def _run(frame: int, *faces: tuple[float, float, float]) -> DetectorRun:
    return DetectorRun(
        frame=frame, faces=tuple((Box.at(x, y, x + s, y + s), 0.8) for x, y, s in faces)
    )


def test_the_tracker_keeps_a_fast_face_as_one_track_across_a_missed_run() -> None:
    # A 40-pixel face moving 60 pixels between runs (further than its own width), missed
    # by the detector on the run at frame 15; a still face elsewhere; runs every 5 frames.
    runs = [
        _run(0, (100, 300, 40), (900, 100, 60)),
        _run(5, (160, 300, 40), (900, 100, 60)),
        _run(10, (220, 300, 40), (901, 100, 60)),
        _run(15, (900, 101, 60)),
        _run(20, (340, 300, 40), (900, 100, 60)),
        _run(25, (900, 100, 60)),
        _run(30, (900, 100, 60)),
        _run(35, (900, 100, 60)),
        _run(39, (900, 100, 60)),
    ]
    settings = DetectionSettings(every=5, max_gap=2)
    tracks = link_tracks(runs, settings=settings, frame_count=40)
    assert [t.track_id for t in tracks] == ["face-1", "face-2"]
    fast = next(t for t in tracks if t.keyframes[0].box.x0 == 100)
    still = next(t for t in tracks if t.track_id != fast.track_id)
    assert [k.frame for k in fast.keyframes] == [0, 5, 10, 20]
    assert fast.box_at(15) == Box.at(280, 300, 320, 340)  # across the missed run
    # Missed from frame 25 on: its box stays until the frame before that run.
    assert (fast.start, fast.end) == (0, 24)
    assert (still.start, still.end) == (0, 39)


def test_the_tracker_starts_a_face_after_the_run_that_did_not_see_it() -> None:
    runs = [_run(0), _run(5), _run(10, (500, 500, 50)), _run(15, (510, 500, 50)), _run(20)]
    (track,) = link_tracks(runs, settings=DetectionSettings(max_gap=0), frame_count=21)
    assert (track.start, track.end) == (6, 19)
    assert track.box_at(6) == Box.at(492, 500, 542, 550)  # carried back at its speed


def test_progress_estimates_the_time_left_from_the_rate_so_far() -> None:
    now = [100.0]
    meter = ProgressMeter(name="finding faces in a.mp4", clock=lambda: now[0])
    meter.stage("finding faces", 1000)
    assert meter.report().left is None
    now[0] += 10
    meter.done(250)
    report = meter.report()
    assert (report.stage, report.done, report.total, report.fraction) == (
        "finding faces",
        250,
        1000,
        0.25,
    )
    assert report.elapsed == pytest.approx(10) and report.left == pytest.approx(30)
    meter.stop()
    with pytest.raises(JobCancelled, match=r"finding faces in a\.mp4 was cancelled"):
        meter.done(251)
