"""The inventory: units registered from a provisioning fleet directory or first heard on
the broker, and retired. Every change is audited."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict
from sqlalchemy.ext.asyncio import AsyncSession

from controller import audit
from controller.errors import InventoryError, UnknownUnitError
from controller.fleet.unit_keys import SIGNING_KEY_FILE, read_signing_key
from controller.store.base import utcnow
from controller.store.fleet import Unit, UnitStatus

__all__ = ["ImportResult", "import_units", "register_unit", "retire_unit"]


class ImportResult(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    added: list[str]
    updated: list[str]
    unchanged: list[str]


async def register_unit(
    session: AsyncSession, unit_id: str, *, source: str = "broker", at: datetime | None = None
) -> Unit:
    """Make sure a unit (e.g. first heard on the broker) is in the inventory."""
    unit = await session.get(Unit, unit_id)
    if unit is None:
        unit = Unit(unit_id=unit_id, source=source, registered_at=at or utcnow())
        session.add(unit)
        session.add(UnitStatus(unit_id=unit_id))
        await session.flush()
    return unit


_INVENTORY_FIELDS = ("site", "model", "ups", "contractor", "serial")


async def import_units(
    session: AsyncSession, fleet_dir: Path, *, actor: str = "system"
) -> ImportResult:
    """Register or update every unit of a provisioning fleet dir (`units/<id>/unit.json`,
    with the unit's signing public key from `units/<id>/signing.pub`)."""
    units_dir = Path(fleet_dir) / "units"
    if not units_dir.is_dir():
        raise InventoryError(str(units_dir), "not a fleet directory (no units/ folder)")
    added, updated, unchanged, rekeyed = [], [], [], []
    for path in sorted(units_dir.glob("*/unit.json")):
        try:
            doc = json.loads(path.read_text())
            unit_id = str(doc["unit_id"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InventoryError(str(path), f"unreadable unit record ({exc})") from exc
        values = {k: (None if doc.get(k) is None else str(doc[k])) for k in _INVENTORY_FIELDS}
        values["signing_public_key"] = read_signing_key(path.parent / SIGNING_KEY_FILE)
        unit = await session.get(Unit, unit_id)
        if unit is None:
            unit = Unit(unit_id=unit_id, source="provisioning", registered_at=utcnow(), **values)
            session.add(unit)
            session.add(UnitStatus(unit_id=unit_id))
            added.append(unit_id)
        elif any(getattr(unit, k) != v for k, v in values.items()) or unit.source != "provisioning":
            if unit.signing_public_key not in (None, values["signing_public_key"]):
                rekeyed.append(unit_id)  # checkpoints signed from now on need the new key
            for key, value in values.items():
                setattr(unit, key, value)
            unit.source = "provisioning"
            updated.append(unit_id)
        else:
            unchanged.append(unit_id)
    if added or updated:
        await audit.record(
            session,
            actor=actor,
            action="units.import",
            subject=f"fleet:{fleet_dir}",
            details={"added": added, "updated": updated, "signing_key_changed": rekeyed},
        )
    await session.flush()
    return ImportResult(added=added, updated=updated, unchanged=unchanged)


async def retire_unit(session: AsyncSession, unit_id: str, *, actor: str, reason: str = "") -> Unit:
    unit = await session.get(Unit, unit_id)
    if unit is None:
        raise UnknownUnitError(unit_id)
    if unit.retired_at is None:
        unit.retired_at = utcnow()
        await audit.record(
            session,
            actor=actor,
            action="unit.retire",
            subject=f"unit:{unit_id}",
            details={"reason": reason},
        )
    return unit
