"""The unit's latest clock offset and temperature, for its heartbeat.

The clock check stores each offset it measures against the NTP server here; the heartbeat
carries the latest while it is younger than the longest wait between two scheduled
self-tests plus an hour (`max_clock_age_s`): older, the clock is no longer known to be
right and the field is left out. Temperature is read afresh from the thermal zones the
temperature check reads; a unit without a readable sensor sends none.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ClockOffsets", "TemperatureReading", "max_clock_age_s", "read_temperature"]

DAY_S = 24 * 3600.0
#: Slack past the longest wait between scheduled self-tests (a test takes a while).
CLOCK_AGE_SLACK_S = 3600.0


def max_clock_age_s(schedule: Sequence[str]) -> float:
    """The longest wait between the scheduled self-tests ("HH:MM" local times) plus an
    hour; a day and an hour with one time or none (boot and remote tests only)."""
    minutes = sorted({int(h) * 60 + int(m) for h, _, m in (t.partition(":") for t in schedule)})
    if len(minutes) < 2:
        return DAY_S + CLOCK_AGE_SLACK_S
    gaps = [b - a for a, b in itertools.pairwise(minutes)]
    gaps.append(minutes[0] + 24 * 60 - minutes[-1])
    return max(gaps) * 60.0 + CLOCK_AGE_SLACK_S


class ClockOffsets:
    """The latest measured clock offset (seconds the reference clock is ahead of ours)
    and its age. `max_age_s` is read at each use (the schedule may change at run time)."""

    def __init__(
        self,
        *,
        max_age_s: Callable[[], float],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_age_s = max_age_s
        self._monotonic = monotonic
        self._offset: float | None = None
        self._at = 0.0

    def record(self, offset_s: float) -> None:
        self._offset, self._at = offset_s, self._monotonic()

    def latest(self) -> float | None:
        """The latest offset, or None when none was measured or it is too old."""
        if self._offset is None or self._monotonic() - self._at > self._max_age_s():
            return None
        return self._offset


@dataclass(frozen=True, slots=True)
class TemperatureReading:
    celsius: float
    """The hottest zone's temperature."""
    zone: str
    zones: int
    """How many zones could be read."""


def read_temperature(root: Path) -> TemperatureReading | None:
    """The hottest readable `thermal_zone*/temp` (millidegrees C) under `root`, or None
    when the unit has no readable sensor there."""
    readings: dict[str, float] = {}
    for zone in sorted(root.glob("thermal_zone*")):
        try:
            readings[zone.name] = int((zone / "temp").read_text().strip()) / 1000.0
        except (OSError, ValueError):
            continue  # a zone that cannot be read (sensor off) is skipped, not fatal
    if not readings:
        return None
    hottest_zone, hottest = max(readings.items(), key=lambda item: item[1])
    return TemperatureReading(hottest, hottest_zone, len(readings))
