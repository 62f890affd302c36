"""A unit's history as people read it, on the unit's page and in the JSON API alike: its
self-test reports, its power readings, and when it was last asked for a self-test."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from controller.store.audit import AuditEntry
from controller.store.fleet import PowerReading, SelfTestRecord

__all__ = [
    "SELFTEST_REQUESTED",
    "latest_power",
    "latest_selftest_of",
    "latest_selftests",
    "power_since",
    "selftest_answering",
    "selftest_requests",
]

#: The audit action written when a unit is sent a self-test command.
SELFTEST_REQUESTED = "command.selftest_now"


async def latest_selftests(
    session: AsyncSession, unit_id: str, *, limit: int
) -> list[SelfTestRecord]:
    """The unit's last `limit` self-test reports, newest first."""
    query = (
        select(SelfTestRecord)
        .where(SelfTestRecord.unit_id == unit_id)
        .order_by(SelfTestRecord.finished_at.desc())
        .limit(limit)
    )
    return list((await session.execute(query)).scalars())


async def latest_selftest_of(
    session: AsyncSession, units: Iterable[str]
) -> dict[str, SelfTestRecord]:
    """Each unit's last self-test report (units without one are left out)."""
    wanted = set(units)
    latest: dict[str, SelfTestRecord] = {}
    if not wanted:
        return latest
    rows = await session.execute(
        select(SelfTestRecord)
        .where(SelfTestRecord.unit_id.in_(wanted))
        .order_by(SelfTestRecord.finished_at)
    )
    for row in rows.scalars():
        latest[row.unit_id] = row
    return latest


async def selftest_answering(
    session: AsyncSession, unit_id: str, command_id: str
) -> SelfTestRecord | None:
    """The report the unit sent in answer to the self-test command `command_id`, if any."""
    query = (
        select(SelfTestRecord)
        .where(SelfTestRecord.unit_id == unit_id, SelfTestRecord.command_id == command_id)
        .order_by(SelfTestRecord.finished_at.desc())
        .limit(1)
    )
    return (await session.execute(query)).scalars().first()


async def latest_power(session: AsyncSession, unit_id: str, *, limit: int) -> list[PowerReading]:
    """The unit's last `limit` power readings, newest first."""
    query = (
        select(PowerReading)
        .where(PowerReading.unit_id == unit_id)
        .order_by(PowerReading.at.desc(), PowerReading.id.desc())
        .limit(limit)
    )
    return list((await session.execute(query)).scalars())


async def power_since(session: AsyncSession, unit_id: str, since: datetime) -> list[PowerReading]:
    """The unit's power readings from `since` on, oldest first (for a chart)."""
    query = (
        select(PowerReading)
        .where(PowerReading.unit_id == unit_id, PowerReading.at >= since)
        .order_by(PowerReading.at)
    )
    return list((await session.execute(query)).scalars())


async def selftest_requests(session: AsyncSession, units: Iterable[str]) -> dict[str, datetime]:
    """When each unit was last sent a self-test command (from the audit log; units never
    asked are left out)."""
    subjects = {f"unit:{u}": u for u in units}
    if not subjects:
        return {}
    rows = await session.execute(
        select(AuditEntry.subject, AuditEntry.at).where(
            AuditEntry.subject.in_(subjects), AuditEntry.action == SELFTEST_REQUESTED
        )
    )
    latest: dict[str, datetime] = {}
    for subject, at in rows.all():
        unit = subjects[subject]
        if unit not in latest or at > latest[unit]:
            latest[unit] = at
    return latest
