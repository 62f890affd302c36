"""The tests that depend on today's date (marker `dates`) pass a year from now as well.

They run again in a subprocess under libfaketime (Debian's `faketime`) with the time of
day moved 365 days on. The preload reaches the processes the tests start (Mosquitto, the
agent, ffmpeg), so certificates are issued and checked on the same shifted clock;
Chromium is kept off it (`pages_harness.browser_env`), and PostgreSQL keeps real time, which
is fine because the product takes every timestamp from Python. The run checks that the
shift was in effect, in the test process and in a child process
(`tests.harness.clock_probe`), so it cannot pass on an unshifted clock, and that every
selected test passed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.harness.binaries import missing, require_binary
from tests.harness.clock_probe import PROBE_ENV

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "tests" / "harness" / "faketime_site"
SHIFT = timedelta(days=365)
NOT_PASSED = {"failure", "error", "skipped"}  # the JUnit report's outcome elements
#: Tests that must run and pass a year on (the rest of the marker's tests are counted).
MUST_PASS = {
    "test_manager_approval_starts_the_real_unit_and_revocation_stops_it[sqlite]",
    "test_full_workflow_audited_end_to_end[sqlite]",
    "test_routes_roles_and_sentences[sqlite]",
    "test_operator_requests_manager_approves_and_the_unit_is_authorised",
}


def faketime_env(probe: Path) -> dict[str, str]:
    """The monotonic clock stays real (see `tests/harness/faketime_site/sitecustomize.py`
    for why, and for the one call that needs help then); only the time of day moves."""
    path = [str(SITE), *filter(None, [os.environ.get("PYTHONPATH")])]
    return os.environ | {
        PROBE_ENV: str(probe),
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "PYTHONPATH": os.pathsep.join(path),
    }


def test_date_sensitive_tests_pass_a_year_on(tmp_path: Path) -> None:
    faketime = require_binary("faketime")
    require_binary("mosquitto")
    probe, junit = tmp_path / "clock.json", tmp_path / "junit.xml"
    started = datetime.now(UTC)
    run = subprocess.run(
        [
            faketime, "-f", f"+{SHIFT.days}d",
            sys.executable, "-m", "pytest", "tests", "-m", "dates",
            "-p", "tests.harness.clock_probe", "-p", "no:cacheprovider",
            "-q", "--no-header", f"--junitxml={junit}",
        ],
        cwd=ROOT,
        env=faketime_env(probe),
        capture_output=True,
        text=True,
        timeout=900,
    )  # fmt: skip
    finished = datetime.now(UTC)
    output = f"{run.stdout[-6000:]}\n{run.stderr[-3000:]}"
    assert run.returncode == 0, output

    for where, seen in json.loads(probe.read_text()).items():
        moved = datetime.fromtimestamp(seen, UTC)
        assert started + SHIFT - timedelta(seconds=5) <= moved <= finished + SHIFT, (
            f"the clock in the {where} was {moved:%Y-%m-%d %H:%M}, not a year on"
        )

    cases = ET.parse(junit).getroot().iter("testcase")
    outcomes = {
        case.get("name", ""): next((c.tag for c in case if c.tag in NOT_PASSED), "passed")
        for case in cases
    }
    failed = {name: tag for name, tag in outcomes.items() if tag in {"failure", "error"}}
    assert not failed, f"{failed}\n{output}"
    if skipped := sorted(name for name, tag in outcomes.items() if tag == "skipped"):
        missing(f"a year on, these were skipped: {skipped}\n{output}")
    assert set(outcomes) >= MUST_PASS, sorted(outcomes)
    print(f"a year on: {run.stdout.strip().splitlines()[-1]}")
