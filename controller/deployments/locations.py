"""Locations where deployable cameras may go: name, address, coordinates, geofence, notes,
and the history of every deployment there. Every change is audited."""

from __future__ import annotations

from sqlalchemy import select

from controller import audit
from controller.deployments.errors import InvalidDeployment, LocationInUse, UnknownLocation
from controller.deployments.models import LocationIn
from controller.deployments.rules import MANAGERS, REQUESTERS, Actor, require_role
from controller.deployments.workflow import DeploymentWorkflow
from controller.store.deployments import (
    LIVE_STATUSES,
    DeploymentRow,
    LocationRow,
    deployments_at,
)

__all__ = ["add_location", "get_location", "list_locations", "retire_location", "update_location"]


def _fields(data: LocationIn) -> dict[str, object]:
    return data.model_dump()


async def _name_free(flow: DeploymentWorkflow, name: str, but: int | None = None) -> None:
    async with flow.db.session() as session:
        query = select(LocationRow.id).where(LocationRow.name == name)
        found = (await session.execute(query)).scalar_one_or_none()
    if found is not None and found != but:
        raise InvalidDeployment(f"a location named {name!r} already exists (#{found})")


async def add_location(flow: DeploymentWorkflow, actor: Actor, data: LocationIn) -> LocationRow:
    require_role(actor, "add a location", REQUESTERS)
    await _name_free(flow, data.name)
    now = flow.clock()
    async with flow.db.session() as session:
        row = LocationRow(
            **_fields(data),
            created_at=now,
            created_by=actor.username,
            updated_at=now,
            retired_at=None,
        )
        session.add(row)
        await session.flush()
        await audit.record(
            session,
            actor=actor.username,
            action="location.add",
            subject=f"location:{row.id}",
            details=_fields(data),
            at=now,
        )
        await session.commit()
    return row


async def update_location(
    flow: DeploymentWorkflow, actor: Actor, location_id: int, data: LocationIn
) -> LocationRow:
    """Change a location. The geofence of a live deployment changes with its next
    authorization (renewal), never silently on the unit."""
    require_role(actor, "edit a location", REQUESTERS)
    await _name_free(flow, data.name, but=location_id)
    now = flow.clock()
    async with flow.db.session() as session:
        row = await session.get(LocationRow, location_id)
        if row is None:
            raise UnknownLocation(location_id)
        before = {k: getattr(row, k) for k in _fields(data)}
        for key, value in _fields(data).items():
            setattr(row, key, value)
        row.updated_at = now
        changed = {k: [before[k], v] for k, v in _fields(data).items() if before[k] != v}
        await audit.record(
            session,
            actor=actor.username,
            action="location.update",
            subject=f"location:{row.id}",
            details={"changed": changed},
            at=now,
        )
        await session.commit()
    return row


async def retire_location(flow: DeploymentWorkflow, actor: Actor, location_id: int) -> LocationRow:
    require_role(actor, "retire a location", MANAGERS)
    now = flow.clock()
    async with flow.db.session() as session:
        row = await session.get(LocationRow, location_id)
        if row is None:
            raise UnknownLocation(location_id)
        live = [
            d.id for d in await deployments_at(session, location_id) if d.status in LIVE_STATUSES
        ]
        if live:
            raise LocationInUse(location_id, live)
        row.retired_at = now
        await audit.record(
            session,
            actor=actor.username,
            action="location.retire",
            subject=f"location:{row.id}",
            details={"name": row.name},
            at=now,
        )
        await session.commit()
    return row


async def get_location(
    flow: DeploymentWorkflow, location_id: int
) -> tuple[LocationRow, list[DeploymentRow]]:
    async with flow.db.session() as session:
        row = await session.get(LocationRow, location_id)
        if row is None:
            raise UnknownLocation(location_id)
        return row, await deployments_at(session, location_id)


async def list_locations(
    flow: DeploymentWorkflow, *, include_retired: bool = False
) -> list[LocationRow]:
    async with flow.db.session() as session:
        query = select(LocationRow).order_by(LocationRow.name)
        if not include_retired:
            query = query.where(LocationRow.retired_at.is_(None))
        return list((await session.execute(query)).scalars())
