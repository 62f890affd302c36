"""Ingest's handlers for the unit reports kept beyond the live state: recording-index
reports (`controller.fleet.index_checkpoints`), command acknowledgements
(`controller.fleet.command_log`; an answer to a case's hold also moves the hold,
`controller.evidence.holds`, and a refused upload command fails its retrieval,
`controller.evidence.retrieval`) and reference pictures (`controller.fleet.snapshots`).
`ControllerService` passes `UnitReports(...).handlers()` to `Ingest`, which runs them in its
batch transaction for each new (not duplicate) message, with the batch's context.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from controller.evidence.holds import apply_ack as hold_ack
from controller.evidence.retrieval import apply_ack as retrieval_ack
from controller.fleet.command_log import record_ack
from controller.fleet.index_checkpoints import record_index
from controller.fleet.snapshots import record_reference
from controller.store.base import utcnow
from protocol.messages import CommandAck, Message, RecordingIndex, ReferenceSnapshot

if TYPE_CHECKING:
    from controller.callouts import CalloutService
    from controller.ingest.apply import BatchContext, Handler

__all__ = ["UnitReports"]


class UnitReports:
    """Stores recording-index reports (raising a fault on a flagged one), acks and the
    reference pictures people asked for."""

    def __init__(self, callouts: CalloutService) -> None:
        self.callouts = callouts
        self.index_reports = 0
        self.acks = 0
        self.pictures = 0

    def handlers(self) -> dict[str, Handler]:
        return {
            "recording_index": self.on_index,
            "command_ack": self.on_ack,
            "reference_snapshot": self.on_picture,
        }

    async def on_index(
        self, session: AsyncSession, message: Message, context: BatchContext
    ) -> None:
        if isinstance(message, RecordingIndex):
            await record_index(session, self.callouts, message, utcnow(), batch=context.changes)
            self.index_reports += 1

    async def on_ack(self, session: AsyncSession, message: Message, context: BatchContext) -> None:
        if isinstance(message, CommandAck) and await record_ack(session, message, utcnow()):
            self.acks += 1
            await hold_ack(
                session, unit_id=message.unit_id, command_id=message.command_id,
                status=message.status, reason=message.reason, at=utcnow(),
            )  # fmt: skip
            await retrieval_ack(
                session, unit_id=message.unit_id, command_id=message.command_id,
                status=message.status, reason=message.reason, at=utcnow(),
            )  # fmt: skip

    async def on_picture(
        self, session: AsyncSession, message: Message, context: BatchContext
    ) -> None:
        if isinstance(message, ReferenceSnapshot) and await record_reference(
            session, message, utcnow()
        ):
            self.pictures += 1
