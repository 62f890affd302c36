"""The commands sent to units and what the units answered.

`controller.fleet.commands` records each command it signs and sends; ingest stores every
`command_ack` a unit sends (one per command and status; a redelivery is stored once),
also when no command with its id was sent to that unit: such an ack is kept and shown
flagged. A command's state is read from its acks (a final answer over "accepted"), so an
ack that arrives before the command's own transaction commits is matched all the same.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from controller.store.reports import CommandAckRecord, CommandRecord
from protocol.messages import CommandAck

__all__ = [
    "MAINTENANCE_ACTIONS",
    "AckView",
    "CommandView",
    "command_state",
    "command_view",
    "recent_commands",
    "record_ack",
    "unmatched_acks",
]

log = logging.getLogger(__name__)

#: Commands a maintenance contractor may see (the others concern evidence).
MAINTENANCE_ACTIONS = ("selftest_now",)
#: Later steps win: a final answer is the command's state whatever arrived after it.
_RANK = {"accepted": 1, "rejected": 2, "failed": 2, "done": 2}


class _View(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AckView(_View):
    command_id: str
    status: str
    reason: str
    result: dict[str, Any]
    sent_at: datetime
    received_at: datetime


class CommandView(_View):
    command_id: str
    action: str
    params: dict[str, Any]
    issued_by: str
    issued_at: datetime
    expires_at: datetime
    state: str
    """sent, accepted, done, failed, rejected or expired (no answer before expiry)."""
    state_words: str
    acks: list[AckView]


async def record_ack(session: AsyncSession, message: CommandAck, received_at: datetime) -> bool:
    """Store one ack (in the caller's transaction); False when it was stored already."""
    stored = await session.scalar(
        select(CommandAckRecord.id).where(
            CommandAckRecord.unit_id == message.unit_id,
            CommandAckRecord.command_id == message.command_id,
            CommandAckRecord.status == message.status,
        )
    )
    if stored is not None:
        return False
    session.add(
        CommandAckRecord(
            unit_id=message.unit_id,
            command_id=message.command_id,
            status=message.status,
            reason=message.reason,
            result=dict(message.result),
            sent_at=message.sent_at,
            received_at=received_at,
            message_seq=message.seq,
        )
    )
    sent = await session.get(CommandRecord, message.command_id)
    if sent is None or sent.unit_id != message.unit_id:
        log.warning(
            "unit=%s ack status=%s for a command not sent to it: command=%s",
            message.unit_id,
            message.status,
            message.command_id,
        )
    return True


def _ack_view(ack: CommandAckRecord) -> AckView:
    return AckView(
        command_id=ack.command_id,
        status=ack.status,
        reason=ack.reason,
        result=ack.result,
        sent_at=ack.sent_at,
        received_at=ack.received_at,
    )


def command_state(acks: list[AckView], expires_at: datetime, now: datetime) -> tuple[str, str]:
    """The command's state and the same in words."""
    latest = max(acks, key=lambda a: (_RANK.get(a.status, 0), a.sent_at), default=None)
    if latest is None:
        if now > expires_at:
            return "expired", "expired without an answer from the unit"
        return "sent", "sent, waiting for the unit's answer"
    reason = f": {latest.reason}" if latest.reason else ""
    words = {
        "accepted": "accepted by the unit, in progress",
        "done": "done",
        "failed": f"failed{reason}",
        "rejected": f"refused by the unit{reason}",
    }
    return latest.status, words.get(latest.status, latest.status)


async def recent_commands(
    session: AsyncSession,
    unit_id: str,
    *,
    now: datetime,
    limit: int = 10,
    actions: tuple[str, ...] | None = None,
) -> list[CommandView]:
    """The unit's latest commands (only `actions` when given), newest first, with acks."""
    query = select(CommandRecord).where(CommandRecord.unit_id == unit_id)
    if actions is not None:
        query = query.where(CommandRecord.action.in_(actions))
    commands = list(
        (await session.execute(query.order_by(CommandRecord.issued_at.desc()).limit(limit)))
        .scalars()
        .all()
    )
    return await _views(session, unit_id, commands, now)


async def command_view(
    session: AsyncSession, unit_id: str, command_id: str, *, now: datetime
) -> CommandView | None:
    """One command sent to the unit, with the unit's answers (None: no such command)."""
    command = await session.scalar(
        select(CommandRecord).where(
            CommandRecord.unit_id == unit_id, CommandRecord.command_id == command_id
        )
    )
    if command is None:
        return None
    return (await _views(session, unit_id, [command], now))[0]


async def _views(
    session: AsyncSession, unit_id: str, commands: list[CommandRecord], now: datetime
) -> list[CommandView]:
    acks: dict[str, list[AckView]] = {}
    if commands:
        rows = await session.execute(
            select(CommandAckRecord)
            .where(
                CommandAckRecord.unit_id == unit_id,
                CommandAckRecord.command_id.in_([c.command_id for c in commands]),
            )
            .order_by(CommandAckRecord.sent_at, CommandAckRecord.id)
        )
        for ack in rows.scalars():
            acks.setdefault(ack.command_id, []).append(_ack_view(ack))
    views = []
    for command in commands:
        mine = acks.get(command.command_id, [])
        state, words = command_state(mine, command.expires_at, now)
        views.append(
            CommandView(
                command_id=command.command_id,
                action=command.action,
                params=command.params,
                issued_by=command.issued_by,
                issued_at=command.issued_at,
                expires_at=command.expires_at,
                state=state,
                state_words=words,
                acks=mine,
            )
        )
    return views


async def unmatched_acks(session: AsyncSession, unit_id: str, *, limit: int = 20) -> list[AckView]:
    """The unit's acks for commands the controller never sent it, newest first."""
    rows = await session.execute(
        select(CommandAckRecord)
        .outerjoin(
            CommandRecord,
            and_(
                CommandRecord.command_id == CommandAckRecord.command_id,
                CommandRecord.unit_id == CommandAckRecord.unit_id,
            ),
        )
        .where(CommandAckRecord.unit_id == unit_id, CommandRecord.command_id.is_(None))
        .order_by(CommandAckRecord.received_at.desc(), CommandAckRecord.id.desc())
        .limit(limit)
    )
    return [_ack_view(a) for a in rows.scalars()]
