"""The facts a contractor needs beside a callout: where the unit is (its site, the address
and a map link), how long its battery lasts on a power fault, and how the respond and
repair deadlines stand (time left, overdue, met or missed). Read for a whole board at
once (`callout_facts`), with one query per kind of fact.

Where: the location of the unit's live deployment (name, address, coordinates), else the
site in the inventory and the position the unit last reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from controller.callouts.faults import POWER_FAULTS
from controller.callouts.views import repaired_at
from controller.store.deployments import LIVE_STATUSES, DeploymentRow, LocationRow
from controller.store.fleet import Callout, PowerReading, Unit, UnitStatus

__all__ = ["Battery", "CalloutFacts", "Deadline", "Place", "callout_facts", "map_url"]


def map_url(lat: float, lon: float) -> str:
    """An OpenStreetMap page with a marker at (lat, lon)."""
    return (
        f"https://www.openstreetmap.org/?mlat={lat:.6f}&mlon={lon:.6f}#map=17/{lat:.6f}/{lon:.6f}"
    )


@dataclass(frozen=True, slots=True)
class Place:
    site: str | None
    address: str | None
    map_url: str | None
    #: Where the map point comes from: the deployment's location or the unit's own report.
    source: Literal["location", "unit"] | None


@dataclass(frozen=True, slots=True)
class Battery:
    """The unit's last power reading, on a power fault."""

    at: datetime
    on_battery: bool
    charge_pct: float | None
    runtime_s: float | None

    @property
    def runs_out_at(self) -> datetime | None:
        """When the battery runs flat at the reading's rate (None unless on battery)."""
        if not self.on_battery or self.runtime_s is None:
            return None
        return self.at + timedelta(seconds=self.runtime_s)


@dataclass(frozen=True, slots=True)
class Deadline:
    """One SLA deadline: `due` (time left), `overdue` (passed, not done), `met` or
    `missed` (done on time or late, at `done_at`)."""

    by: datetime
    state: Literal["due", "overdue", "met", "missed"]
    done_at: datetime | None


@dataclass(frozen=True, slots=True)
class CalloutFacts:
    place: Place
    #: A power fault (mains, battery, UPS): the battery facts matter.
    power_fault: bool
    #: The unit's last power reading, on a power fault (None without one).
    battery: Battery | None
    respond: Deadline
    repair: Deadline
    #: When the unit showed the fault clear (None while it has not).
    cleared_at: datetime | None

    def battery_outlasts_repair(self, repair_by: datetime) -> bool | None:
        """Whether the battery lasts to the repair deadline (None when unknown)."""
        if self.battery is None or self.battery.runs_out_at is None:
            return None
        return self.battery.runs_out_at >= repair_by


def _deadline(by: datetime, done_at: datetime | None, now: datetime) -> Deadline:
    if done_at is not None:
        return Deadline(by, "met" if done_at <= by else "missed", done_at)
    return Deadline(by, "due" if now <= by else "overdue", None)


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


async def callout_facts(
    session: AsyncSession, callouts: Sequence[Callout], now: datetime
) -> dict[int, CalloutFacts]:
    """Callout id -> its facts, for every callout given."""
    units = {c.unit_id for c in callouts}
    if not units:
        return {}
    inventory = {
        row.unit_id: row
        for row in (
            await session.execute(select(Unit.unit_id, Unit.site).where(Unit.unit_id.in_(units)))
        ).all()
    }
    positions = {
        row.unit_id: (row.position_lat, row.position_lon)
        for row in (
            await session.execute(
                select(UnitStatus.unit_id, UnitStatus.position_lat, UnitStatus.position_lon).where(
                    UnitStatus.unit_id.in_(units)
                )
            )
        ).all()
    }
    locations: dict[str, tuple[str, str, float, float]] = {}
    live = await session.execute(
        select(DeploymentRow.unit_id, LocationRow.name, LocationRow.address)
        .add_columns(LocationRow.lat, LocationRow.lon)
        .join(LocationRow, LocationRow.id == DeploymentRow.location_id)
        .where(DeploymentRow.unit_id.in_(units), DeploymentRow.status.in_(LIVE_STATUSES))
        .order_by(DeploymentRow.planned_start)
    )
    for unit_id, name, address, lat, lon in live.all():
        locations[unit_id] = (name, address, lat, lon)  # the latest live one wins
    power_units = {c.unit_id for c in callouts if c.fault_code in POWER_FAULTS}
    batteries: dict[str, Battery] = {}
    if power_units:
        newest = (
            select(PowerReading.unit_id, func.max(PowerReading.at).label("at"))
            .where(PowerReading.unit_id.in_(power_units))
            .group_by(PowerReading.unit_id)
            .subquery()
        )
        rows = await session.execute(
            select(PowerReading).join(
                newest,
                (PowerReading.unit_id == newest.c.unit_id) & (PowerReading.at == newest.c.at),
            )
        )
        for reading in rows.scalars():
            batteries[reading.unit_id] = Battery(
                reading.at,
                reading.on_battery,
                _float(reading.facts.get("charge_pct")),
                _float(reading.facts.get("runtime_s")),
            )
    out: dict[int, CalloutFacts] = {}
    for callout in callouts:
        unit = callout.unit_id
        if unit in locations:
            name, address, lat, lon = locations[unit]
            place = Place(name, address or None, map_url(lat, lon), "location")
        else:
            site = inventory[unit].site if unit in inventory else None
            lat_lon = positions.get(unit)
            point = None
            if lat_lon is not None and None not in lat_lon:
                point = map_url(float(lat_lon[0]), float(lat_lon[1]))
            place = Place(site, None, point, "unit" if point else None)
        cleared = repaired_at(callout.fault_cleared_at, callout.verified_at)
        power = callout.fault_code in POWER_FAULTS
        out[callout.id] = CalloutFacts(
            place=place,
            power_fault=power,
            battery=batteries.get(unit) if power else None,
            respond=_deadline(callout.respond_by, callout.attending_at, now),
            repair=_deadline(callout.repair_by, cleared, now),
            cleared_at=cleared,
        )
    return out
