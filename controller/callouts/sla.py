"""Contract clocks: SLA deadlines that run only in a contract's working hours.

A contract's hours are written as people write them:

    "24x7"                                   the clock always runs
    "Mon-Fri 08:00-18:00"                    weekdays, office hours
    "Mon-Fri 08:00-18:00; Sat 09:00-13:00"   several windows, separated by ';'

in the contract's time zone (default Europe/London, so the clock follows BST/GMT). A
deadline is the moment the given number of contract hours has elapsed after the start;
a callout raised at 17:00 on a Friday with a 4 h respond target under Mon-Fri
08:00-18:00 is due at 11:00 on Monday.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["ContractClock", "parse_hours"]

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(
    r"^(?P<days>[A-Za-z,\- ]+?)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})$"
)
#: A deadline further away than this means the hours leave (almost) no working time.
_MAX_DAYS = 800


@dataclass(frozen=True, slots=True)
class Window:
    weekday: int  # Monday = 0
    start: time
    end: time | None  # None = midnight at the end of the day


def _day(name: str) -> int:
    key = name.strip().lower()[:3]
    if key not in _DAYS:
        raise ValueError(f"unknown day {name.strip()!r} (use Mon..Sun)")
    return _DAYS.index(key)


def _days(spec: str) -> list[int]:
    out: list[int] = []
    for part in spec.split(","):
        if "-" in part:
            first, last = (_day(p) for p in part.split("-", 1))
            span = (last - first) % 7
            out.extend((first + i) % 7 for i in range(span + 1))
        else:
            out.append(_day(part))
    return sorted(set(out))


def _clock(text: str) -> time | None:
    hours, minutes = (int(p) for p in text.split(":"))
    if (hours, minutes) == (24, 0):
        return None
    if not (0 <= hours < 24 and 0 <= minutes < 60):
        raise ValueError(f"{text!r} is not a time of day")
    return time(hours, minutes)


def parse_hours(spec: str) -> list[Window] | None:
    """Windows of a contract-hours string; None for round-the-clock ("24x7")."""
    text = spec.strip()
    if text.lower() in ("24x7", "24/7", "always"):
        return None
    windows: list[Window] = []
    for chunk in filter(None, (c.strip() for c in text.split(";"))):
        match = _WINDOW.match(chunk)
        if not match:
            raise ValueError(f"{chunk!r}: write hours like 'Mon-Fri 08:00-18:00' or '24x7'")
        start, end = _clock(match["start"]), _clock(match["end"])
        if start is None:
            raise ValueError(f"{chunk!r}: a window cannot start at 24:00")
        if end is not None and end <= start:
            raise ValueError(f"{chunk!r}: the window must end after it starts")
        windows.extend(Window(day, start, end) for day in _days(match["days"]))
    if not windows:
        raise ValueError("no working hours given")
    return windows


class ContractClock:
    """Adds contract hours to an instant."""

    def __init__(self, hours: str = "24x7", timezone: str = "Europe/London") -> None:
        self.hours = hours
        self.windows = parse_hours(hours)
        try:
            self.zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {timezone!r}") from exc

    def _windows_on(self, day: date) -> list[tuple[datetime, datetime]]:
        assert self.windows is not None
        spans = []
        for window in self.windows:
            if window.weekday != day.weekday():
                continue
            start = datetime.combine(day, window.start, self.zone)
            end = (
                datetime.combine(day + timedelta(days=1), time(0), self.zone)
                if window.end is None
                else datetime.combine(day, window.end, self.zone)
            )
            spans.append((start.astimezone(UTC), end.astimezone(UTC)))
        return sorted(spans)

    def add(self, start: datetime, hours: float) -> datetime:
        """The instant at which `hours` of contract time have run after `start`."""
        start = start.astimezone(UTC)
        if self.windows is None:
            return start + timedelta(hours=hours)
        remaining = timedelta(hours=hours)
        day = start.astimezone(self.zone).date()
        for _ in range(_MAX_DAYS):
            for begin, end in self._windows_on(day):
                if end <= start:
                    continue
                begin = max(begin, start)
                if begin + remaining <= end:
                    return begin + remaining
                remaining -= end - begin
            day += timedelta(days=1)
        raise ValueError(f"contract hours {self.hours!r} leave no time to meet the deadline")

    def is_open(self, at: datetime) -> bool:
        if self.windows is None:
            return True
        at = at.astimezone(UTC)
        day = at.astimezone(self.zone).date()
        return any(b <= at < e for b, e in self._windows_on(day))
