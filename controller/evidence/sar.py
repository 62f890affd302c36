"""Subject access request deadlines (UK GDPR art. 12(3)): one calendar month from the day
the request was received, extendable by up to two further months with a recorded reason.

The month is counted on the calendar of the control room (Europe/London): a request
received on 3 September is due by the end of 3 October; where the next month has no such
day (received 31 January), by the end of that month's last day (28 or 29 February), as
the ICO's guidance counts it. "By the end of" means 23:59:59 local time on that day.

A case's SAR is answered once it is released, refused or closed; until then it is overdue
when its deadline (extended, if extended) has passed.
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, time
from enum import StrEnum
from zoneinfo import ZoneInfo

__all__ = [
    "ANSWERED",
    "LOCAL_ZONE",
    "MAX_EXTENSION_MONTHS",
    "SarState",
    "add_months",
    "due_by",
    "extended_by",
    "sar_state",
]

LOCAL_ZONE = ZoneInfo("Europe/London")
MAX_EXTENSION_MONTHS = 2
#: Case statuses in which a SAR has been answered (its deadline no longer runs).
ANSWERED = ("released", "refused", "closed")


class SarState(StrEnum):
    NOT_SAR = "not_sar"
    ANSWERED = "answered"
    RUNNING = "running"
    DUE_SOON = "due_soon"
    OVERDUE = "overdue"


def add_months(day: date, months: int) -> date:
    """The same day `months` calendar months on, or that month's last day."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _end_of_local_day(day: date) -> datetime:
    return datetime.combine(day, time(23, 59, 59), LOCAL_ZONE).astimezone(UTC)


def due_by(received_at: datetime) -> datetime:
    """The deadline of a SAR received at `received_at`: the end of the local day one
    calendar month on."""
    received = received_at.astimezone(LOCAL_ZONE).date()
    return _end_of_local_day(add_months(received, 1))


def extended_by(received_at: datetime, months: int) -> datetime:
    """The deadline extended by `months` (1 or 2) further months, counted from receipt."""
    if not 1 <= months <= MAX_EXTENSION_MONTHS:
        raise ValueError(f"an extension is 1 or {MAX_EXTENSION_MONTHS} further months")
    received = received_at.astimezone(LOCAL_ZONE).date()
    return _end_of_local_day(add_months(received, 1 + months))


def sar_state(
    *,
    case_type: str,
    status: str,
    due_at: datetime | None,
    extended_to: datetime | None,
    now: datetime,
    reminder_days: int,
) -> SarState:
    """Where a case stands against its SAR deadline."""
    if case_type != "subject_access" or due_at is None:
        return SarState.NOT_SAR
    if status in ANSWERED:
        return SarState.ANSWERED
    deadline = extended_to or due_at
    if now > deadline:
        return SarState.OVERDUE
    if (deadline - now).total_seconds() <= reminder_days * 86400:
        return SarState.DUE_SOON
    return SarState.RUNNING
