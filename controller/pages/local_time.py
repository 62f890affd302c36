"""Times on the evidence pages in the control room's local time (Europe/London, GMT or
BST as the day falls), and the browser's `datetime-local` values read back as that zone.

Registered as Jinja filters on import: `{{ value | local }}` -> `3 Oct 2026 14:05 BST`,
`{{ value | local_day }}` -> `3 Oct 2026`, `{{ value | local_input }}` -> the value of a
`datetime-local` input.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from controller.evidence.sar import LOCAL_ZONE
from controller.pages.render import templates

__all__ = ["fmt_local", "fmt_local_day", "fmt_local_input", "from_local_input"]


def fmt_local(value: datetime | None, empty: str = "") -> str:
    if value is None:
        return empty
    local = value.astimezone(LOCAL_ZONE)
    return f"{local:%d %b %Y %H:%M} {local.tzname()}".lstrip("0")


def fmt_local_seconds(value: datetime | None, empty: str = "") -> str:
    if value is None:
        return empty
    local = value.astimezone(LOCAL_ZONE)
    return f"{local:%d %b %Y %H:%M:%S} {local.tzname()}".lstrip("0")


def fmt_local_day(value: datetime | date | None, empty: str = "") -> str:
    if value is None:
        return empty
    day = value.astimezone(LOCAL_ZONE).date() if isinstance(value, datetime) else value
    return f"{day:%d %b %Y}".lstrip("0")


def fmt_local_input(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(LOCAL_ZONE).strftime("%Y-%m-%dT%H:%M:%S")


def from_local_input(text: str) -> datetime:
    """A `datetime-local` value (local wall time, no zone) as an aware time. A wall time
    that occurs twice (the autumn change) is the first; one that does not exist (the
    spring change) is moved on by the hour skipped. `ValueError` when not a time."""
    naive = datetime.fromisoformat(text.strip())
    if naive.tzinfo is not None:
        return naive
    aware = naive.replace(tzinfo=LOCAL_ZONE, fold=0)
    round_trip = aware.astimezone(LOCAL_ZONE).replace(tzinfo=None)
    if round_trip != naive:  # in the spring gap
        aware = (naive + timedelta(hours=1)).replace(tzinfo=LOCAL_ZONE)
    return aware


templates.env.filters.update(
    local=fmt_local,
    local_seconds=fmt_local_seconds,
    local_day=fmt_local_day,
    local_input=fmt_local_input,
)
