"""The fleet a page at a time, what needs attention first: the fleet page, its refresh and
`GET /api/units` at any fleet size.

Every unit in scope is ranked from a light read (the columns the roll-up needs, the active
faults, the overdue callouts: `rollup.light_rollups`); only the units of the page asked
for are then read in full (`UnitSummary`). Attention order, then unit id:

    0  fault      an urgent (P1) fault is open (other than being offline)
    1  offline    offline, or never reported
    2  overdue    an open callout past its respond or repair deadline, or self-test overdue
    3  degraded   any other reason for concern (P2/P3 fault, on battery, gate closed)
    4  ok

A page is asked for by position (`offset`, the pages) or after a cursor (the API): the
cursor names the last unit of the previous page and its place in the order, so the next
page starts right after it even when units before it changed. By unit id
(`order="unit"`) a walk through every page sees each unit once; in attention order a
unit whose group changes between two pages may be seen twice or not at all, as on any
list that is kept current.

    page = await fleet_page(session, contractor=None, filters=FleetFilter(health="fault"))
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from controller.errors import ControllerError
from controller.fleet.rollup import (
    LightRollUp,
    RollUp,
    UnitSummary,
    light_rollups,
    summaries,
)
from controller.store.base import utcnow
from controller.store.fleet import Callout, Unit
from protocol.faults import FaultCode, Priority

__all__ = [
    "ATTENTION",
    "HEALTH",
    "BadCursor",
    "FleetFilter",
    "FleetPage",
    "Order",
    "decode_cursor",
    "encode_cursor",
    "filter_choices",
    "fleet_page",
    "overdue_units",
]

#: Attention groups in the order the fleet is shown.
ATTENTION = ("fault", "offline", "overdue", "degraded", "ok")
HEALTH: tuple[RollUp, ...] = ("ok", "degraded", "fault")
Order = Literal["attention", "unit"]
_OFFLINE = FaultCode.UNIT_OFFLINE.value
_OVERDUE = FaultCode.SELFTEST_OVERDUE.value
_OPEN = ("raised", "acknowledged", "attending", "resolved")
_NOT_RESPONDED = ("raised",)
_NOT_REPAIRED = ("raised", "acknowledged", "attending")


@dataclass(frozen=True, slots=True)
class FleetFilter:
    """Which units: one health state, one site, one contractor, and a piece of text found
    in the unit id or the site (each when given)."""

    health: RollUp | None = None
    site: str | None = None
    contractor: str | None = None
    text: str | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        if self.site:
            found.append(Unit.site == self.site)
        if self.contractor:
            found.append(Unit.contractor == self.contractor)
        if self.text:
            pattern = "%" + _escape_like(self.text.strip().lower()) + "%"
            found.append(
                or_(
                    Unit.unit_id.ilike(pattern, escape="\\"),
                    Unit.site.ilike(pattern, escape="\\"),
                )
            )
        return found


@dataclass(frozen=True, slots=True)
class FleetPage:
    """One page of the fleet in `order`.

    `counts`: units per health state among those matching every filter but health;
    `attention`: the same units per attention group; `total`: units matching every filter;
    `units`: this page's, in order, and `groups` the attention group of each;
    `offset`: how many come before them; `next_cursor`: where the next page starts (None
    on the last page)."""

    counts: dict[str, int]
    attention: dict[str, int]
    total: int
    units: list[UnitSummary]
    groups: dict[str, str]
    offset: int
    limit: int
    order: Order
    next_cursor: str | None
    at: datetime = field(default_factory=utcnow)


class BadCursor(ControllerError):
    """A page cursor this service did not write (422)."""

    status = 422

    def __init__(self, cursor: str) -> None:
        super().__init__(f"{cursor[:40]!r} is not a cursor from a previous page of units")
        self.cursor = cursor


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def overdue_units(
    session: AsyncSession, now: datetime, *, contractor: str | None = None
) -> set[str]:
    """Units with an open callout past its respond deadline (not yet acknowledged) or its
    repair deadline (not yet resolved), or flagged as breached by the SLA job."""
    query = select(Callout.unit_id).where(
        Callout.status.in_(_OPEN),
        or_(
            Callout.respond_breached.is_(True),
            Callout.repair_breached.is_(True),
            Callout.status.in_(_NOT_RESPONDED) & (Callout.respond_by < now),
            Callout.status.in_(_NOT_REPAIRED) & (Callout.repair_by < now),
        ),
    )
    if contractor is not None:
        query = query.where(Callout.contractor == contractor)
    return set((await session.execute(query.distinct())).scalars())


def _group(unit: LightRollUp, overdue: set[str]) -> int:
    faults = unit.open_faults
    if faults and any(p == Priority.P1 and code != _OFFLINE for code, p in faults.items()):
        return 0
    if unit.online is not True:
        return 1
    if unit.unit_id in overdue or _OVERDUE in faults:
        return 2
    return 3 if unit.state != "ok" else 4


def _key(order: Order, group: int, unit_id: str) -> tuple[int, str]:
    return (group, unit_id) if order == "attention" else (0, unit_id)


def encode_cursor(key: tuple[int, str]) -> str:
    """The cursor of the unit at `key` (its group and id) in a page's order."""
    raw = f"{key[0]}:{key[1]}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """The (group, unit id) a cursor names; `BadCursor` for one this service did not
    write."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        group, unit_id = raw.split(":", 1)
        return int(group), unit_id
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise BadCursor(cursor) from exc


async def filter_choices(
    session: AsyncSession, *, contractor: str | None
) -> tuple[list[str], list[str]]:
    """The sites and the contractors of the units in service in `contractor`'s scope
    (None: every unit), each sorted: what the fleet's filters offer."""
    sites = select(Unit.site).where(Unit.retired_at.is_(None), Unit.site.is_not(None))
    contractors = select(Unit.contractor).where(
        Unit.retired_at.is_(None), Unit.contractor.is_not(None)
    )
    if contractor is not None:
        sites = sites.where(Unit.contractor == contractor)
        contractors = contractors.where(Unit.contractor == contractor)
    found_sites = (await session.execute(sites.distinct().order_by(Unit.site))).scalars()
    found = (await session.execute(contractors.distinct().order_by(Unit.contractor))).scalars()
    return [s for s in found_sites if s], [c for c in found if c]


async def fleet_page(
    session: AsyncSession,
    *,
    contractor: str | None,
    filters: FleetFilter = FleetFilter(),
    order: Order = "attention",
    limit: int = 50,
    offset: int = 0,
    after: str | None = None,
    now: datetime | None = None,
) -> FleetPage:
    """The units of one page (`limit` from `offset`, or after the cursor `after`) among
    those in `contractor`'s scope (None: every unit) that match `filters`."""
    if limit < 1:
        raise ValueError("a page holds at least one unit")
    now = now or utcnow()
    light = await light_rollups(session, contractor=contractor, where=filters.conditions())
    overdue = await overdue_units(session, now, contractor=contractor)
    counts: dict[str, int] = dict.fromkeys(HEALTH, 0)
    attention = dict.fromkeys(ATTENTION, 0)
    ranked: list[tuple[tuple[int, str], LightRollUp]] = []
    for unit in light:
        group = _group(unit, overdue)
        counts[unit.state] += 1
        attention[ATTENTION[group]] += 1
        if filters.health is None or unit.state == filters.health:
            ranked.append((_key(order, group, unit.unit_id), unit))
    ranked.sort(key=lambda item: item[0])
    if after is not None:
        start = _bisect(ranked, decode_cursor(after))
    else:
        start = min(max(offset, 0), len(ranked))
    chosen = ranked[start : start + limit]
    units = await summaries(session, [unit.unit_id for _, unit in chosen])
    more = start + limit < len(ranked)
    return FleetPage(
        counts=counts,
        attention=attention,
        total=len(ranked),
        units=units,
        groups={unit.unit_id: ATTENTION[_group(unit, overdue)] for _, unit in chosen},
        offset=start,
        limit=limit,
        order=order,
        next_cursor=encode_cursor(chosen[-1][0]) if chosen and more else None,
        at=now,
    )


def _bisect(ranked: Sequence[tuple[tuple[int, str], LightRollUp]], key: tuple[int, str]) -> int:
    """Index of the first entry after `key`."""
    low, high = 0, len(ranked)
    while low < high:
        middle = (low + high) // 2
        if ranked[middle][0] <= key:
            low = middle + 1
        else:
            high = middle
    return low
