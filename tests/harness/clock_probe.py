"""A pytest plugin for the year-on run (`tests/test_dates_year_on.py`): at the start of the
session it writes what the clock says, in this process and in a child process, to the file
named by `$CCTV_CLOCK_PROBE`, so the run that asked for a shifted clock can check that the
shift was in effect where the tests run (and not just asked for).

Loaded only with `-p tests.harness.clock_probe`."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

__all__ = ["PROBE_ENV", "pytest_sessionstart"]

PROBE_ENV = "CCTV_CLOCK_PROBE"


def pytest_sessionstart(session: pytest.Session) -> None:
    target = os.environ.get(PROBE_ENV)
    if not target:
        raise pytest.UsageError(f"tests.harness.clock_probe needs ${PROBE_ENV} (a file to write)")
    child = subprocess.run(["date", "-u", "+%s"], capture_output=True, text=True, check=True)
    Path(target).write_text(
        json.dumps(
            {
                "test process": datetime.now(UTC).timestamp(),
                "child process": float(child.stdout.strip()),
            }
        )
    )
