"""Callouts as the control room and the contractor read them: the board (open ones by
priority, or the latest closed), one callout with its events, and each unit's count of
open callouts. A contractor's user sees only the callouts of their contract; any other
reads as unknown."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from controller.callouts.lifecycle import OPEN_STATES
from controller.errors import UnknownCallout
from controller.store.fleet import Callout, CalloutEvent

__all__ = [
    "board",
    "callout_events",
    "callout_in_scope",
    "events_of",
    "open_callout_counts",
]


async def board(
    session: AsyncSession,
    *,
    show: Literal["open", "closed"],
    contractor: str | None,
    unit_id: str | None = None,
    closed_limit: int = 20,
) -> list[Callout]:
    """The open callouts (all of them), or the latest `closed_limit` closed ones, by
    priority then age; one contractor's only when `contractor` is given."""
    query = select(Callout).order_by(Callout.priority, Callout.raised_at)
    if show == "open":
        query = query.where(Callout.status.in_(OPEN_STATES))
    else:
        query = query.where(Callout.status == "closed").limit(closed_limit)
    if contractor is not None:
        query = query.where(Callout.contractor == contractor)
    if unit_id:
        query = query.where(Callout.unit_id == unit_id)
    return list((await session.execute(query)).scalars())


async def callout_in_scope(
    session: AsyncSession, callout_id: int, contractor: str | None
) -> Callout:
    """The callout, if it exists and (for a contractor) is on their contract; else
    `UnknownCallout`, so a contractor cannot learn of another contractor's callouts."""
    callout = await session.get(Callout, callout_id)
    if callout is None or (contractor is not None and callout.contractor != contractor):
        raise UnknownCallout(callout_id)
    return callout


async def callout_events(session: AsyncSession, callout_id: int) -> list[CalloutEvent]:
    """The callout's steps, oldest first."""
    query = (
        select(CalloutEvent)
        .where(CalloutEvent.callout_id == callout_id)
        .order_by(CalloutEvent.at, CalloutEvent.id)
    )
    return list((await session.execute(query)).scalars())


async def events_of(
    session: AsyncSession, callout_ids: Iterable[int], kinds: Iterable[str]
) -> dict[int, list[CalloutEvent]]:
    """The events of these kinds of each callout, oldest first (callouts without one are
    left out)."""
    ids, wanted = sorted(set(callout_ids)), sorted(set(kinds))
    found: dict[int, list[CalloutEvent]] = {}
    for i in range(0, len(ids), 500):
        query = (
            select(CalloutEvent)
            .where(CalloutEvent.callout_id.in_(ids[i : i + 500]), CalloutEvent.kind.in_(wanted))
            .order_by(CalloutEvent.at, CalloutEvent.id)
        )
        for event in (await session.execute(query)).scalars():
            found.setdefault(event.callout_id, []).append(event)
    return found


async def open_callout_counts(session: AsyncSession, contractor: str | None) -> dict[str, int]:
    """unit id -> number of open callouts (units without one are left out)."""
    query = (
        select(Callout.unit_id, func.count())
        .where(Callout.open_key.is_not(None))
        .group_by(Callout.unit_id)
    )
    if contractor is not None:
        query = query.where(Callout.contractor == contractor)
    return {unit_id: int(count) for unit_id, count in (await session.execute(query)).all()}
