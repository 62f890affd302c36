"""Picture checks on real footage: the sample concourse clip passes every check, and each
degraded variant of it fails the one check made for that fault and no other."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from edge_agent.selftest import (
    Baseline,
    BaselineError,
    CheckOutcome,
    FrameSampler,
    SelfTestCheck,
    SelfTestRunner,
    SelfTestThresholds,
    check_frozen,
    check_moved,
    check_privacy_masks,
    check_signal,
    learn_baseline,
    prepare_all,
    run_image_checks,
)
from protocol.faults import FaultCode
from protocol.messages import CheckResult
from tests.edge_agent import variants as V
from tests.harness.footage import require_sample_clip


@pytest.fixture(scope="module")
def clip() -> V.Clip:
    require_sample_clip()
    return V.load_clip()


@pytest.fixture(scope="module")
def table(clip: V.Clip) -> dict[str, dict[str, CheckOutcome]]:
    result = V.verdict_table()
    print("\n" + V.format_table(result))
    return result


def test_clip_is_real_footage(clip: V.Clip) -> None:
    assert len(clip.frame_times) > 150  # the test period alone has ~190 decoded frames
    assert 7 <= len(clip.frames) <= 9  # sampled about once a second
    assert clip.frames[0].shape == (720, 1280, 3)


def test_verdict_table_covers_every_check(table: dict[str, dict[str, CheckOutcome]]) -> None:
    assert list(table) == [v.name for v in V.VARIANTS]
    for outcomes in table.values():
        assert sorted(outcomes) == sorted(V.CHECKS)


@pytest.mark.parametrize("variant", V.VARIANTS, ids=lambda v: v.name)
def test_variant_fails_the_right_check_and_no_other(
    variant: V.Variant, table: dict[str, dict[str, CheckOutcome]]
) -> None:
    outcomes = table[variant.name]
    failed = sorted(name for name, o in outcomes.items() if o.verdict == "fail")
    assert failed == ([variant.fails] if variant.fails else []), {
        n: o.message for n, o in outcomes.items()
    }
    if variant.fails:
        culprit = outcomes[variant.fails]
        assert culprit.fault is not None and culprit.message
    for outcome in outcomes.values():
        # Another check may only say it could not judge, with nothing measured.
        assert outcome.verdict != "warn", outcome
        if outcome.verdict == "not_assessed":
            assert outcome.value is None and outcome.message.startswith("not assessed"), outcome


def test_clean_clip_passes_with_margin(table: dict[str, dict[str, CheckOutcome]]) -> None:
    clean = table["clean"]
    t = SelfTestThresholds()
    assert all(o.verdict == "pass" for o in clean.values()), clean

    def value(name: str) -> float:
        v = clean[name].value
        assert v is not None
        return v

    assert value("camera_signal") == pytest.approx(25.0, abs=0.5)
    assert value("image_black") > 3 * t.black_luma_warn
    assert value("image_overexposed") < t.clipped_warn_pct / 4
    assert value("blur") > 100 * t.blur_ratio_warn * 1.4
    assert value("frozen") > 5 * t.frozen_max_diff
    assert value("view_obstructed") < t.obstructed_warn_pct * 0.75
    assert value("view_moved") < t.moved_warn_pct / 2
    assert value("privacy_masks") >= t.mask_dark_min_pct


def test_faults_fire_well_past_their_threshold(table: dict[str, dict[str, CheckOutcome]]) -> None:
    def value(variant: str, check: str) -> float:
        v = table[variant][check].value
        assert v is not None
        return v

    t = SelfTestThresholds()
    assert value("blurred", "blur") < 100 * t.blur_ratio_fail / 4
    assert value("near-black", "image_black") < t.black_luma_fail / 2
    assert value("overexposed", "image_overexposed") > t.clipped_fail_pct * 2
    assert value("frozen", "frozen") < t.frozen_max_diff / 4
    assert value("covered-60-flat", "view_obstructed") > t.obstructed_fail_pct * 1.3
    assert value("knocked", "view_moved") > t.moved_fail_pct * 2


def test_people_walking_never_look_frozen_or_moved(clip: V.Clip) -> None:
    """Every 4-second window of normal footage: frozen and moved stay quiet."""
    baseline = V.clip_baseline()
    frames = prepare_all(clip.frames)
    for start in range(len(frames) - 3):
        window = frames[start : start + 4]
        times = clip.sample_times[start : start + 4]
        frozen = check_frozen(window, times)
        moved = check_moved(window, baseline)
        assert frozen.verdict == "pass", (start, frozen)
        assert moved.verdict == "pass", (start, moved)


def test_baseline_survives_a_restart(clip: V.Clip, tmp_path: Path) -> None:
    learned = learn_baseline(clip.base_frames, frame_times=clip.base_frame_times)
    path = tmp_path / "state" / "baseline.npz"
    learned.save(path)
    loaded = Baseline.load(path)
    assert np.array_equal(loaded.reference, learned.reference)
    assert np.allclose(loaded.cell_texture, learned.cell_texture)
    assert loaded.sharpness == pytest.approx(learned.sharpness)
    assert loaded.expected_fps == pytest.approx(25.0, abs=0.1)
    assert loaded.created_at == learned.created_at
    before, after = (
        run_image_checks(
            clip.frames,
            sample_times=clip.sample_times,
            frame_times=clip.frame_times,
            baseline=baseline,
        )
        for baseline in (learned, loaded)
    )
    assert before == after


def test_baseline_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(BaselineError, match="no baseline yet"):
        Baseline.load(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a numpy archive")
    with pytest.raises(BaselineError, match=r"bad\.npz: unreadable"):
        Baseline.load(bad)
    with pytest.raises(BaselineError, match="at least 3"):
        learn_baseline([np.zeros((720, 1280, 3), np.uint8)], expected_fps=25)


def test_signal_lost_and_stale(clip: V.Clip) -> None:
    lost = check_signal([], expected_fps=25.0)
    assert lost.verdict == "fail" and lost.fault is FaultCode.CAMERA_NO_SIGNAL
    last = clip.frame_times[-1]
    stale = check_signal(clip.frame_times, expected_fps=25.0, now=last + 30.0)
    assert stale.verdict == "fail" and "no picture for 30.0 s" in stale.message
    slowish = check_signal(clip.frame_times[::2], expected_fps=25.0)  # 12.5 fps
    assert slowish.verdict == "warn" and slowish.value == pytest.approx(12.5, abs=0.2)


def test_a_picture_without_detail_is_not_judged_for_focus_or_motion(clip: V.Clip) -> None:
    """A lens cap: the black check reports it; blur, frozen, cover and moved say they
    could not judge rather than piling on."""
    black = [np.zeros((720, 1280, 3), np.uint8)] * len(clip.frames)
    outcomes = {
        o.name: o
        for o in run_image_checks(
            black,
            sample_times=clip.sample_times,
            frame_times=clip.frame_times,
            baseline=V.clip_baseline(),
        )
    }
    assert outcomes["image_black"].verdict == "fail"
    for name in ("blur", "frozen", "view_obstructed", "view_moved"):
        outcome = outcomes[name]
        assert outcome.verdict == "not_assessed" and outcome.value is None, outcome


def test_privacy_mask_check(clip: V.Clip) -> None:
    none = check_privacy_masks(clip.frames, [])
    assert none.verdict == "pass" and none.value is None
    half = [
        V.apply_masks(f, [[(0.72, 0.0), (0.86, 0.0), (0.86, 0.32), (0.72, 0.32)]])
        for f in clip.frames
    ]
    partly = check_privacy_masks(half, V.MASKS)
    assert partly.verdict == "fail" and partly.fault is FaultCode.PRIVACY_MASK_INEFFECTIVE
    assert partly.value is not None and 20 < partly.value < 80


def test_thresholds_drive_the_verdict(clip: V.Clip) -> None:
    strict = SelfTestThresholds().with_overrides(
        {"thresholds.obstructed_warn_pct": 1.0, "thresholds.obstructed_fail_pct": 2.0}
    )
    outcomes = {o.name: o for o in V.evaluate(V.VARIANTS[0], strict)}
    assert outcomes["view_obstructed"].verdict == "fail"
    assert outcomes["view_obstructed"].threshold == 2.0


def test_outcomes_become_protocol_results(table: dict[str, dict[str, CheckOutcome]]) -> None:
    for outcomes in table.values():
        for outcome in outcomes.values():
            result = outcome.to_message()
            assert isinstance(result, CheckResult)
            assert result.model_dump()["verdict"] == outcome.verdict
    blur = table["blurred"]["blur"].to_message()
    assert blur.fault is FaultCode.BLUR and blur.unit == "%" and blur.threshold == 40.0


async def test_live_sampling_and_the_runner_on_the_real_clip(clip: V.Clip) -> None:
    """The whole path as on a unit: every decoded frame is noted, about one a second is
    prepared, and the runner runs the picture suite in a worker thread."""
    import cv2

    sampler = FrameSampler(interval_s=1.0, window_s=8.0)
    capture = cv2.VideoCapture(str(V.CLIP))
    decoded = 0
    try:
        while True:
            ok, frame = capture.read()
            t = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            if not ok or (t <= 0 and decoded):
                break
            decoded += 1
            if sampler.tick(t):
                sampler.add(t, np.asarray(frame, dtype=np.uint8))
    finally:
        capture.release()
    window = sampler.window()
    assert 7 <= len(window.samples) <= 9
    assert all(0.9 < b - a < 1.1 for a, b in itertools.pairwise(window.sample_times))
    assert window.frame_times[-1] - window.frame_times[0] == pytest.approx(8.0, abs=0.1)

    def picture_suite() -> list[CheckOutcome]:
        return run_image_checks(
            window.samples,
            sample_times=window.sample_times,
            frame_times=window.frame_times,
            baseline=V.clip_baseline(),
        )

    runner = SelfTestRunner(
        [SelfTestCheck("picture", picture_suite, FaultCode.CAMERA_NO_SIGNAL, blocking=True)]
    )
    report = await runner.run("boot")
    assert [o.name for o in report.outcomes] == V.CHECKS
    assert report.verdict == "pass", [o for o in report.outcomes if o.verdict != "pass"]
