"""Each unit's state rolled up for the fleet views: the overview, a unit's detail and the
counts per state.

Roll-up rule (retired units are left out of every roll-up):

- **fault**: the unit is offline (by its last will, a clean offline message, or silence
  for longer than `offline_timeout_s`), has never reported, or has any open P1 fault;
- **degraded**: any open P2/P3 fault, running on battery, or its gate closed while it
  reports a deployment (it should be recording and is not allowed to);
- **ok**: otherwise.

Open faults are those the controller holds active (from the unit's fault events and its
own unit_offline / selftest_overdue) plus those in the unit's last heartbeat.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal, NamedTuple, cast

from pydantic import BaseModel, ConfigDict
from sqlalchemy import ColumnElement, Table, Text, select
from sqlalchemy import cast as sa_cast
from sqlalchemy.ext.asyncio import AsyncSession

from controller.errors import UnknownUnitError
from controller.labels import fault_label, priority_words
from controller.store.fleet import Callout, SeqGap, Unit, UnitFault, UnitStatus
from protocol.faults import FaultCode, Priority

__all__ = [
    "FleetOverview",
    "LightRollUp",
    "RollUp",
    "UnitDetail",
    "UnitSummary",
    "fleet_overview",
    "light_rollups",
    "offline_cutoff",
    "roll_up",
    "rollup_counts",
    "summaries",
    "unit_detail",
]

RollUp = Literal["ok", "degraded", "fault"]


class _View(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UnitSummary(_View):
    unit_id: str
    site: str | None
    model: str | None
    contractor: str | None
    state: RollUp
    reasons: list[str]
    online: bool | None
    last_seen_at: datetime | None
    recording: bool | None
    gate_open: bool | None
    on_battery: bool | None
    charge_pct: float | None
    storage_free_pct: float | None
    last_selftest_at: datetime | None
    last_selftest_verdict: str | None
    open_faults: list[str]
    uptime_s: float | None = None
    outbox_dropped: int | None = None
    position: tuple[float, float] | None = None
    """(lat, lon) from the unit's last heartbeat, when it knows where it is."""


class FleetOverview(_View):
    counts: dict[str, int]
    units: list[UnitSummary]


class UnitDetail(_View):
    summary: UnitSummary
    ups: str | None
    serial: str | None
    registered_at: datetime
    retired_at: datetime | None
    status: dict[str, Any]
    faults: list[dict[str, Any]]
    open_callouts: list[int]
    gaps: list[dict[str, Any]]


def _open_faults(status: UnitStatus | None, faults: list[UnitFault]) -> dict[str, Priority]:
    found = {f.code: Priority(f.priority) for f in faults if f.active}
    for code in (status.reported_faults if status else None) or []:
        try:
            found.setdefault(code, FaultCode(code).priority)
        except ValueError:
            continue
    return found


def _fault_words(code: str, priority: Priority) -> str:
    """`Picture is black (P1 urgent)`."""
    return f"{fault_label(code).title} ({priority_words(priority.value)})"


def roll_up(status: UnitStatus | None, faults: list[UnitFault]) -> tuple[RollUp, list[str]]:
    """The unit's roll-up state and the reasons for it (see the module docstring)."""
    open_faults = _open_faults(status, faults)
    reasons: list[str] = []
    if status is None or status.online is None:
        reasons.append("never reported")
    elif not status.online:
        reasons.append(f"offline ({status.online_reason})" if status.online_reason else "offline")
    reasons += [
        _fault_words(code, p) for code, p in sorted(open_faults.items()) if p == Priority.P1
    ]
    if reasons:
        return "fault", reasons
    reasons += [
        _fault_words(code, p) for code, p in sorted(open_faults.items()) if p != Priority.P1
    ]
    if status is not None and status.on_battery:
        reasons.append("on battery")
    if status is not None and status.deployment_id and status.gate_open is False:
        reasons.append(f"gate closed during deployment {status.deployment_id}")
    return ("degraded", reasons) if reasons else ("ok", [])


def _summary(unit: Unit, status: UnitStatus | None, faults: list[UnitFault]) -> UnitSummary:
    state, reasons = roll_up(status, faults)
    free_pct = None
    if status and status.storage_total_bytes and status.storage_free_bytes is not None:
        free_pct = round(100.0 * status.storage_free_bytes / status.storage_total_bytes, 1)
    return UnitSummary(
        unit_id=unit.unit_id,
        site=unit.site,
        model=unit.model,
        contractor=unit.contractor,
        state=state,
        reasons=reasons,
        online=status.online if status else None,
        last_seen_at=status.last_seen_at if status else None,
        recording=status.recording if status else None,
        gate_open=status.gate_open if status else None,
        on_battery=status.on_battery if status else None,
        charge_pct=status.charge_pct if status else None,
        storage_free_pct=free_pct,
        last_selftest_at=status.last_selftest_at if status else None,
        last_selftest_verdict=status.last_selftest_verdict if status else None,
        open_faults=sorted(_open_faults(status, faults)),
        uptime_s=status.uptime_s if status else None,
        outbox_dropped=status.outbox_dropped if status else None,
        position=_position(status),
    )


def _position(status: UnitStatus | None) -> tuple[float, float] | None:
    if status is None or status.position_lat is None or status.position_lon is None:
        return None
    return status.position_lat, status.position_lon


async def fleet_overview(session: AsyncSession, contractor: str | None = None) -> FleetOverview:
    """Every unit in service (optionally only one contractor's) with its roll-up."""
    query = (
        select(Unit, UnitStatus)
        .outerjoin(UnitStatus, UnitStatus.unit_id == Unit.unit_id)
        .where(Unit.retired_at.is_(None))
        .order_by(Unit.unit_id)
    )
    fault_query = select(UnitFault).where(UnitFault.active.is_(True))
    if contractor is not None:
        query = query.where(Unit.contractor == contractor)
        fault_query = fault_query.join(Unit, Unit.unit_id == UnitFault.unit_id).where(
            Unit.contractor == contractor
        )
    faults: dict[str, list[UnitFault]] = {}
    for fault in (await session.execute(fault_query)).scalars():
        faults.setdefault(fault.unit_id, []).append(fault)
    units = [
        _summary(unit, status, faults.get(unit.unit_id, []))
        for unit, status in (await session.execute(query)).all()
    ]
    counts = {"ok": 0, "degraded": 0, "fault": 0}
    for summary in units:
        counts[summary.state] += 1
    return FleetOverview(counts=counts, units=units)


async def summaries(session: AsyncSession, unit_ids: Sequence[str]) -> list[UnitSummary]:
    """The units `unit_ids` in full, in that order (ids not in the inventory left out)."""
    if not unit_ids:
        return []
    query = (
        select(Unit, UnitStatus)
        .outerjoin(UnitStatus, UnitStatus.unit_id == Unit.unit_id)
        .where(Unit.unit_id.in_(list(unit_ids)))
    )
    faults: dict[str, list[UnitFault]] = {}
    fault_query = select(UnitFault).where(
        UnitFault.active.is_(True), UnitFault.unit_id.in_(list(unit_ids))
    )
    for fault in (await session.execute(fault_query)).scalars():
        faults.setdefault(fault.unit_id, []).append(fault)
    found = {
        unit.unit_id: _summary(unit, status, faults.get(unit.unit_id, []))
        for unit, status in (await session.execute(query)).all()
    }
    return [found[unit_id] for unit_id in unit_ids if unit_id in found]


class LightRollUp(NamedTuple):
    """One unit's roll-up from plain rows (`light_rollups`): its state, whether it is
    online, and its open faults with their priorities. (A tuple: made 10,000 times a
    request.)"""

    unit_id: str
    state: RollUp
    online: bool | None
    open_faults: dict[str, Priority]


async def light_rollups(
    session: AsyncSession,
    *,
    contractor: str | None = None,
    where: Sequence[ColumnElement[bool]] = (),
) -> list[LightRollUp]:
    """Every unit in service (only `contractor`'s when given, narrowed by `where`:
    conditions on `Unit`) rolled up from plain rows, not ORM objects: cheap at 10,000
    units. In no particular order."""
    faults: dict[str, list[UnitFault]] = {}
    rows = await session.execute(
        select(UnitFault.unit_id, UnitFault.code, UnitFault.priority).where(UnitFault.active)
    )
    for unit_id, code, priority in rows.all():
        faults.setdefault(unit_id, []).append(
            UnitFault(unit_id=unit_id, code=code, priority=priority, active=True)
        )
    # Table columns, not ORM attributes: plain rows, read at C speed.
    units, status_table = cast(Table, Unit.__table__), cast(Table, UnitStatus.__table__)
    status_column = status_table.c
    query = (
        select(
            units.c.unit_id,
            status_column.online,
            status_column.online_reason,
            status_column.on_battery,
            status_column.deployment_id,
            status_column.gate_open,
            # As text: most units report no fault, and "[]" needs no JSON decoding.
            sa_cast(status_column.reported_faults, Text),
        )
        .select_from(units.outerjoin(status_table, status_column.unit_id == units.c.unit_id))
        .where(units.c.retired_at.is_(None), *where)
    )
    if contractor is not None:
        query = query.where(Unit.contractor == contractor)
    found = []
    none: list[UnitFault] = []
    for unit_id, online, reason, on_battery, deployment, gate, reported in (
        await session.execute(query)
    ).all():
        codes = json.loads(reported) if reported and reported not in _NO_FAULTS else []
        status = None
        if online is not None:
            status = _Light(unit_id, online, reason, on_battery, deployment, gate, codes)
        held = faults.get(unit_id, none)
        state, _ = roll_up(status, held)  # type: ignore[arg-type]
        open_faults = _open_faults(status, held) if held or codes else {}  # type: ignore[arg-type]
        found.append(LightRollUp(unit_id, state, online, open_faults))
    return found


_NO_FAULTS = frozenset({"[]", "null"})


async def rollup_counts(session: AsyncSession) -> dict[str, int]:
    """Units in service per roll-up state, read as plain rows (cheap at 10,000 units)."""
    counts = {"ok": 0, "degraded": 0, "fault": 0}
    for unit in await light_rollups(session):
        counts[unit.state] += 1
    return counts


class _Light:
    """The status columns `roll_up` reads, without an ORM object."""

    __slots__ = (
        "deployment_id",
        "gate_open",
        "on_battery",
        "online",
        "online_reason",
        "reported_faults",
        "unit_id",
    )

    def __init__(
        self,
        unit_id: str,
        online: bool | None,
        online_reason: str | None,
        on_battery: bool | None,
        deployment_id: str | None,
        gate_open: bool | None,
        reported_faults: list[str] | None,
    ) -> None:
        self.unit_id, self.online, self.online_reason = unit_id, online, online_reason or ""
        self.on_battery, self.deployment_id, self.gate_open = on_battery, deployment_id, gate_open
        self.reported_faults = reported_faults or []


async def unit_detail(session: AsyncSession, unit_id: str) -> UnitDetail:
    unit = await session.get(Unit, unit_id)
    if unit is None:
        raise UnknownUnitError(unit_id)
    status = await session.get(UnitStatus, unit_id)
    faults = list(
        (await session.execute(select(UnitFault).where(UnitFault.unit_id == unit_id))).scalars()
    )
    callouts = (
        await session.execute(
            select(Callout.id).where(Callout.unit_id == unit_id, Callout.open_key.is_not(None))
        )
    ).scalars()
    gaps = (
        await session.execute(
            select(SeqGap).where(SeqGap.unit_id == unit_id).order_by(SeqGap.first_seq).limit(100)
        )
    ).scalars()
    status_doc: dict[str, Any] = {}
    if status is not None:
        status_doc = {
            c.key: getattr(status, c.key)
            for c in UnitStatus.__table__.columns
            if c.key != "unit_id"
        }
    return UnitDetail(
        summary=_summary(unit, status, faults),
        ups=unit.ups,
        serial=unit.serial,
        registered_at=unit.registered_at,
        retired_at=unit.retired_at,
        status=status_doc,
        faults=[
            {
                "code": f.code,
                "priority": f.priority,
                "active": f.active,
                "origin": f.origin,
                "check": f.check_name,
                "detail": f.detail,
                "facts": f.facts,
                "raised_at": f.raised_at,
                "cleared_at": f.cleared_at,
            }
            for f in faults
        ],
        open_callouts=list(callouts),
        gaps=[
            {
                "first_seq": g.first_seq,
                "last_seq": g.last_seq,
                "reason": g.reason,
                "detected_at": g.detected_at,
            }
            for g in gaps
        ],
    )


def offline_cutoff(now: datetime, timeout_s: float) -> datetime:
    return now - timedelta(seconds=timeout_s)
