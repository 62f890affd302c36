"""A check that could not judge is `not_assessed`: neutral in the report's verdict, shown
as such to the engineer on site, and every check the unit reports is one the protocol's
table names (so the control room has words for it)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from rich.console import Console

from edge_agent.selftest import (
    CheckOutcome,
    SelfTestReport,
    check_broker,
    check_clock,
    check_recording,
    check_storage,
    check_temperature,
    check_ups,
    render_table,
    run_image_checks,
    worst_verdict,
)
from edge_agent.selftest.baseline import learn_baseline
from protocol.checks import CheckName
from protocol.faults import FaultCode


def test_not_assessed_counts_neither_way_in_the_reports_verdict() -> None:
    assert worst_verdict(["pass", "not_assessed", "not_assessed"]) == "pass"
    assert worst_verdict(["not_assessed", "warn"]) == "warn"
    assert worst_verdict(["not_assessed", "fail", "pass"]) == "fail"
    assert worst_verdict(["not_assessed", "not_assessed"]) == "warn"  # nothing shown working
    assert worst_verdict([]) == "pass"


def test_the_engineers_table_says_not_assessed() -> None:
    now = datetime.now(UTC)
    report = SelfTestReport(
        now,
        now,
        (
            CheckOutcome("storage", "pass", 60.0, 5.0, "%", "60% free"),
            CheckOutcome("clock", "not_assessed", None, 5.0, "s", "not assessed: no NTP server"),
        ),
    )
    assert report.verdict == "pass"
    message = report.to_message(unit_id="cam-01", seq=1, boot_id="b1", report_id="r1")
    assert [c.verdict for c in message.checks] == ["pass", "not_assessed"]
    assert message.verdict == "pass"
    console = Console(record=True, width=160)
    console.print(render_table(report))
    text = console.export_text()
    assert "NOT ASSESSED" in text and "Overall: PASS" in text


async def test_every_check_the_unit_reports_is_in_the_protocols_table(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    scene = [rng.integers(0, 255, (180, 320, 3), dtype=np.uint8) for _ in range(8)]
    baseline = learn_baseline(scene, expected_fps=10.0)
    picture = run_image_checks(
        scene,
        sample_times=[float(i) for i in range(8)],
        frame_times=[i / 10 for i in range(80)],
        baseline=baseline,
        masks=[[(0.0, 0.0), (0.2, 0.0), (0.2, 0.2)]],
        recorded=[np.zeros((180, 320), np.uint8)],
        now=8.0,
    )
    system = [
        check_recording(datetime.now(UTC)),
        check_storage(tmp_path),
        await check_clock(None),
        check_temperature(tmp_path / "no-sensors"),
        await check_ups(lambda: (True, "Done and passed")),
        await check_broker(None),
    ]
    names = {o.name for o in picture + system}
    assert names <= set(CheckName), names - set(CheckName)
    # the runner reports a crashed or overrunning picture suite as "picture"
    assert CheckName.PICTURE.info.fault is FaultCode.CAMERA_NO_SIGNAL
    assert {o.verdict for o in system if o.name in ("clock", "temperature", "broker")} == {
        "not_assessed"
    }
