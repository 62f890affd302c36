"""Put on PYTHONPATH only by the year-on run (`tests/test_dates_year_on.py`), for every
Python process it starts under libfaketime: the tests, the agent, the simulator.

That run keeps the monotonic clock real (`FAKETIME_DONT_FAKE_MONOTONIC=1`): with a faked
monotonic clock every timed lock wait hangs, because libfaketime 0.9.10 does not wrap
`sem_clockwait`, which CPython uses for `Lock.acquire(timeout=...)`. But with a real
monotonic clock that libfaketime refuses an absolute `clock_nanosleep` on
CLOCK_MONOTONIC with EINVAL, and that is how `time.sleep` waits on Linux. So, only when
that preload is in effect, `time.sleep` waits with `select()` instead (a relative timeout,
which libfaketime passes through). Nothing else changes.
"""

from __future__ import annotations

import os
import select
import time
from typing import SupportsIndex


def _sleep(secs: float | SupportsIndex, /) -> None:
    seconds = float(secs)
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        select.select([], [], [], left)


if os.environ.get("FAKETIME_DONT_FAKE_MONOTONIC") == "1" and "libfaketime" in os.environ.get(
    "LD_PRELOAD", ""
):
    time.sleep = _sleep
