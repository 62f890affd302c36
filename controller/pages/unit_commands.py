"""Remote commands the pages send to units (self-test now), through the controller's
signed-command module, and when each unit was last asked."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from fastapi import Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from controller.errors import LinkError
from controller.store.audit import AuditEntry

__all__ = ["pending_selftests", "send_selftest"]

SELFTEST_ACTIONS = ("command.selftest_now",)


async def send_selftest(request: Request, unit_id: str, *, actor: str) -> str:
    """Publish a signed self-test-now command to the unit; returns the command id."""
    link = getattr(request.app.state, "link", None)
    if link is None:
        raise LinkError("the controller has no broker connection; try again shortly")
    from controller import commands  # the signed-command module of the controller

    async with request.app.state.db.session() as session:
        sent = await commands.selftest_now(link, session, unit_id, actor=actor)
        await session.commit()  # the audit entry: also when the page shows "requested"
    return sent.body.command_id


async def pending_selftests(session: AsyncSession, units: Iterable[str]) -> dict[str, datetime]:
    """When each unit was last sent a self-test request (from the audit log)."""
    subjects = {f"unit:{u}": u for u in units}
    if not subjects:
        return {}
    rows = await session.execute(
        select(AuditEntry.subject, AuditEntry.at).where(
            AuditEntry.subject.in_(subjects), AuditEntry.action.in_(SELFTEST_ACTIONS)
        )
    )
    latest: dict[str, datetime] = {}
    for subject, at in rows.all():
        unit = subjects[subject]
        if unit not in latest or at > latest[unit]:
            latest[unit] = at
    return latest
