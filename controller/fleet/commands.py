"""Signed commands to units: self-test now, evidential hold, release hold.

Each command is signed with the controller's Ed25519 key (`protocol.signing.Signer`),
carries an id and an expiry (a unit refuses a replay or a late delivery), is published
on the unit's `cmd` topic and, in the caller's transaction, written to the audit log and
recorded (`controller.store.reports.CommandRecord`) for the unit's acknowledgements to be
matched against (`controller.fleet.command_log`). Without a session nothing is recorded.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from controller import audit
from controller.errors import ConfigError, LinkError
from controller.link import ControllerLink
from controller.store.base import Database, utcnow
from controller.store.reports import CommandRecord
from protocol.messages import (
    Command,
    CommandAction,
    CommandBody,
    ReleaseHold,
    SelfTestNow,
    SetHold,
)

__all__ = [
    "DEFAULT_TTL",
    "release_hold",
    "request_selftest",
    "selftest_now",
    "send_command",
    "set_hold",
]

DEFAULT_TTL = timedelta(minutes=15)


async def send_command(
    link: ControllerLink,
    session: AsyncSession | None,
    unit_id: str,
    action: CommandAction,
    *,
    actor: str,
    ttl: timedelta = DEFAULT_TTL,
) -> Command:
    """Sign, publish and audit one command. Raises LinkError when the broker is away."""
    if link.signer is None:
        raise ConfigError("signing_key_file", "no command-signing key: commands cannot be sent")
    now = utcnow()
    body = CommandBody(
        command_id=uuid.uuid4().hex,
        unit_id=unit_id,
        issued_at=now,
        expires_at=now + ttl,
        issued_by=actor[:200],
        action=action,
    )
    command = link.signer.command(body, seq=link.next_seq(), boot_id=link.boot_id)
    await link.publish(command)
    if session is not None:
        session.add(
            CommandRecord(
                command_id=body.command_id,
                unit_id=unit_id,
                action=action.action,
                params=action.model_dump(mode="json", exclude={"action"}),
                issued_by=body.issued_by,
                issued_at=body.issued_at,
                expires_at=body.expires_at,
            )
        )
        await audit.record(
            session,
            actor=actor,
            action=f"command.{action.action}",
            subject=f"unit:{unit_id}",
            details={"command_id": body.command_id, **action.model_dump(mode="json")},
            at=now,
        )
    return command


async def selftest_now(
    link: ControllerLink, session: AsyncSession | None, unit_id: str, *, actor: str
) -> Command:
    return await send_command(link, session, unit_id, SelfTestNow(), actor=actor)


async def request_selftest(
    db: Database, link: ControllerLink | None, unit_id: str, *, actor: str
) -> Command:
    """Send the unit a self-test-now command and commit its audit entry and record, for a
    person's request (the JSON API and the pages). Raises LinkError without a broker link."""
    if link is None:
        raise LinkError("the controller has no broker connection; try again shortly")
    # A session of its own: its transaction (and on SQLite the write lock) starts only
    # with the audit entry, after the publish, not while waiting on the broker.
    async with db.session() as session:
        command = await selftest_now(link, session, unit_id, actor=actor)
        await session.commit()
    return command


async def set_hold(
    link: ControllerLink,
    session: AsyncSession | None,
    unit_id: str,
    *,
    hold_id: str,
    start: datetime,
    end: datetime,
    reference: str,
    actor: str,
) -> Command:
    action = SetHold(hold_id=hold_id, start=start, end=end, reference=reference)
    return await send_command(link, session, unit_id, action, actor=actor)


async def release_hold(
    link: ControllerLink, session: AsyncSession | None, unit_id: str, *, hold_id: str, actor: str
) -> Command:
    return await send_command(link, session, unit_id, ReleaseHold(hold_id=hold_id), actor=actor)
