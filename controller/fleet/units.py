"""Units as a person may see them: one unit within a user's contract, and the units in
service (for choosing one). The JSON API and the pages both read units through here."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from controller.errors import NotOnContract, UnknownUnitError
from controller.store.fleet import Unit

__all__ = ["unit_in_scope", "units_in_service"]


async def unit_in_scope(session: AsyncSession, unit_id: str, contractor: str | None) -> Unit:
    """The unit, if it exists and is on `contractor`'s contract (None: the control room,
    who see every unit). Raises `UnknownUnitError` or `NotOnContract`."""
    unit = await session.get(Unit, unit_id)
    if unit is None:
        raise UnknownUnitError(unit_id)
    if contractor is not None and unit.contractor != contractor:
        raise NotOnContract(unit_id, contractor)
    return unit


async def units_in_service(session: AsyncSession, *, limit: int | None = None) -> list[Unit]:
    """Every unit not retired, by id (the first `limit` only, when given)."""
    query = select(Unit).where(Unit.retired_at.is_(None)).order_by(Unit.unit_id)
    if limit is not None:
        query = query.limit(limit)
    return list((await session.execute(query)).scalars())
