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

from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from controller.errors import UnknownUnitError
from controller.store.fleet import Callout, SeqGap, Unit, UnitFault, UnitStatus
from protocol.faults import FaultCode, Priority

__all__ = [
    "FleetOverview",
    "RollUp",
    "UnitDetail",
    "UnitSummary",
    "fleet_overview",
    "offline_cutoff",
    "roll_up",
    "rollup_counts",
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


def roll_up(status: UnitStatus | None, faults: list[UnitFault]) -> tuple[RollUp, list[str]]:
    """The unit's roll-up state and the reasons for it (see the module docstring)."""
    open_faults = _open_faults(status, faults)
    reasons: list[str] = []
    if status is None or status.online is None:
        reasons.append("never reported")
    elif not status.online:
        reasons.append(f"offline ({status.online_reason})" if status.online_reason else "offline")
    reasons += [f"{code} ({p})" for code, p in sorted(open_faults.items()) if p == Priority.P1]
    if reasons:
        return "fault", reasons
    reasons += [f"{code} ({p})" for code, p in sorted(open_faults.items()) if p != Priority.P1]
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


async def rollup_counts(session: AsyncSession) -> dict[str, int]:
    """Units in service per roll-up state, read as plain rows (cheap at 10,000 units)."""
    faults: dict[str, list[UnitFault]] = {}
    rows = await session.execute(
        select(UnitFault.unit_id, UnitFault.code, UnitFault.priority).where(UnitFault.active)
    )
    for unit_id, code, priority in rows.all():
        faults.setdefault(unit_id, []).append(
            UnitFault(unit_id=unit_id, code=code, priority=priority, active=True)
        )
    columns = [
        UnitStatus.unit_id,
        UnitStatus.online,
        UnitStatus.online_reason,
        UnitStatus.on_battery,
        UnitStatus.deployment_id,
        UnitStatus.gate_open,
        UnitStatus.reported_faults,
    ]
    counts = {"ok": 0, "degraded": 0, "fault": 0}
    query = (
        select(Unit.unit_id, *columns[1:])
        .outerjoin(UnitStatus, UnitStatus.unit_id == Unit.unit_id)
        .where(Unit.retired_at.is_(None))
    )
    for row in (await session.execute(query)).all():
        status = None
        if row.online is not None:
            status = _Light(
                row.unit_id,
                row.online,
                row.online_reason,
                row.on_battery,
                row.deployment_id,
                row.gate_open,
                row.reported_faults,
            )
        state, _ = roll_up(status, faults.get(row.unit_id, []))  # type: ignore[arg-type]
        counts[state] += 1
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
