"""Times as people read them: in the control room's zone (`ControllerSettings.timezone`,
Europe/London by default), always with the zone named, so a time is never silently an
hour off in summer; and how long until a deadline, in words.

    when(at, zone)              # "14 Jul 2026 10:21 BST", "23 Nov 2026 09:21 GMT"
    clock(at, zone)             # "10:21:05 BST"
    countdown(deadline, now)    # "in 2 h 10 min", "overdue by 35 min"

Instants are stored and compared in UTC; only their words are local. A naive datetime is
taken as UTC.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

__all__ = [
    "DEFAULT_ZONE",
    "clock",
    "countdown",
    "day",
    "day_start",
    "duration_words",
    "local",
    "period_end",
    "when",
]

DEFAULT_ZONE = ZoneInfo("Europe/London")


def local(value: datetime, zone: ZoneInfo = DEFAULT_ZONE) -> datetime:
    """`value` as a wall-clock time in `zone`."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(zone)


def _named(value: datetime, fmt: str) -> str:
    return f"{value.strftime(fmt)} {value.tzname()}"


def when(value: datetime, zone: ZoneInfo = DEFAULT_ZONE) -> str:
    """Day and time with the zone: `14 Jul 2026 10:21 BST`."""
    return _named(local(value, zone), "%d %b %Y %H:%M")


def clock(value: datetime, zone: ZoneInfo = DEFAULT_ZONE) -> str:
    """Time of day to the second, with the zone: `10:21:05 BST`."""
    return _named(local(value, zone), "%H:%M:%S")


def day(value: datetime | date, zone: ZoneInfo = DEFAULT_ZONE) -> str:
    """The day: `14 Jul 2026` (a datetime is first put in `zone`)."""
    shown = local(value, zone) if isinstance(value, datetime) else value
    return shown.strftime("%d %b %Y")


def day_start(value: date, zone: ZoneInfo = DEFAULT_ZONE) -> datetime:
    """The instant (UTC) the local day `value` begins in `zone`."""
    return datetime.combine(value, time(), zone).astimezone(UTC)


def duration_words(seconds: float) -> str:
    """A span in the two largest units that matter: `2 days 3 h`, `2 h 10 min`, `35 min`,
    `40 s`."""
    left = int(abs(seconds))
    days, rest = divmod(left, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} day{'s' if days != 1 else ''}" + (f" {hours} h" if hours else "")
    if hours:
        return f"{hours} h" + (f" {minutes} min" if minutes else "")
    if minutes:
        return f"{minutes} min"
    return f"{secs} s"


def countdown(deadline: datetime, now: datetime) -> str:
    """Time left to `deadline`: `in 2 h 10 min`; once passed, `overdue by 35 min`."""
    if deadline.tzinfo is None:
        deadline = deadline.replace(tzinfo=UTC)
    left = (deadline - now).total_seconds()
    if left >= 0:
        return f"in {duration_words(left)}"
    return f"overdue by {duration_words(-left)}"


def period_end(last_day: date, zone: ZoneInfo, now: datetime) -> datetime:
    """The end of the local day `last_day`, or `now` if that is sooner (UTC)."""
    return min(day_start(last_day + timedelta(days=1), zone), now.astimezone(UTC))
