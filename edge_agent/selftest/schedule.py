"""When the scheduled self-tests run: local times of day (shift change, 07:00 and 19:00 by
default) in the unit's time zone, correct across daylight-saving changes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from edge_agent.errors import AgentError

__all__ = ["DEFAULT_TIMES", "ScheduleError", "next_run", "next_runs", "parse_times"]

DEFAULT_TIMES = ("07:00", "19:00")


class ScheduleError(AgentError):
    def __init__(self, reason: str) -> None:
        super().__init__(f"self-test schedule: {reason}")
        self.reason = reason


def parse_times(times: Sequence[str]) -> list[time]:
    """ "HH:MM" strings to sorted, distinct times of day."""
    parsed: set[time] = set()
    for item in times:
        hh, sep, mm = item.strip().partition(":")
        if not (sep and hh.isdigit() and mm.isdigit() and len(mm) == 2):
            raise ScheduleError(f"{item!r} is not a time of day HH:MM")
        if not (int(hh) < 24 and int(mm) < 60):
            raise ScheduleError(f"{item!r} is not a time of day HH:MM")
        parsed.add(time(int(hh), int(mm)))
    if not parsed:
        raise ScheduleError("no times given")
    return sorted(parsed)


def _zone(tz: str | ZoneInfo) -> ZoneInfo:
    if isinstance(tz, ZoneInfo):
        return tz
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError(f"unknown time zone {tz!r}") from exc


def next_runs(
    after: datetime,
    times: Sequence[str] = DEFAULT_TIMES,
    tz: str | ZoneInfo = "Europe/London",
    *,
    count: int = 2,
) -> list[datetime]:
    """The next `count` run times strictly after `after` (aware), in UTC.

    A local time that does not exist on a spring-forward day runs at the same wall time
    after the jump (folded forward by the zone); a repeated one on the autumn day runs once.
    """
    if after.tzinfo is None:
        raise ScheduleError("`after` must be timezone-aware")
    zone = _zone(tz)
    slots = parse_times(times)
    runs: list[datetime] = []
    day: date = after.astimezone(zone).date()
    while len(runs) < count:
        for slot in slots:
            local = datetime.combine(day, slot, tzinfo=zone)
            # Round-trip through UTC normalises a non-existent wall time to a real instant.
            instant = local.astimezone(UTC)
            if instant > after and (not runs or instant > runs[-1]):
                runs.append(instant)
                if len(runs) == count:
                    break
        day += timedelta(days=1)
    return runs


def next_run(
    after: datetime, times: Sequence[str] = DEFAULT_TIMES, tz: str | ZoneInfo = "Europe/London"
) -> datetime:
    """The next run time strictly after `after`, in UTC."""
    return next_runs(after, times, tz, count=1)[0]
