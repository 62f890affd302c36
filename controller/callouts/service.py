"""Faults -> maintenance callouts with SLA deadlines, and the callout lifecycle.

    raised -> acknowledged -> attending -> resolved -> verified -> closed
                                  ^            |
                                  +------------+  (the fix did not hold: attend again)

- One open callout per unit and fault (`open_key`); a repeat raise adds an event to it,
  and re-opens it (back to attending) when it had been resolved or verified.
- Priority from `protocol.faults`; deadlines from the unit's contract (`ContractSettings`):
  P1/P2 respond and repair in contract hours, P3 at the next routine visit.
  *Respond* is met when someone first attends; *repair* when the unit shows the fault
  clear (`views.repaired_at`: its own clear event, or the self-test that verified the
  repair), not when someone clicks resolve.
- `verified` needs the unit's word after the resolve: a self-test showing the fault clear,
  or its fault-cleared event; it happens automatically when that arrives (see
  `faults`) and is refused by hand otherwise.
- A fault the unit clears, or a unit coming back online, is noted on the callout.
- UPS facts (the last PowerStatus) are attached to power callouts.
Every change is written to the audit log in the same transaction.

`CalloutService` holds a `lifecycle` (`controller.callouts.lifecycle`: states, steps by
hand, the event log) and the `faults` rules (`controller.callouts.faults`: what faults
and self-tests do); here are the SLA sweep and the reading side.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from controller.callouts.faults import CalloutBatch, FaultRules
from controller.callouts.lifecycle import SYSTEM, CalloutLifecycle
from controller.callouts.notify import queue_notifications
from controller.callouts.views import CalloutEventView, CalloutView, repaired_at
from controller.errors import UnknownCallout
from controller.localtime import when as local_when
from controller.store.base import utcnow
from controller.store.fleet import Callout, CalloutEvent

if TYPE_CHECKING:
    from controller.config import ControllerSettings

__all__ = ["CalloutService"]


class CalloutService:
    """Callouts: raised and verified from the units' messages (`faults`), moved by hand
    (`lifecycle.transition`), swept for SLA breaches, and read."""

    def __init__(
        self, settings: ControllerSettings, *, now: Callable[[], datetime] = utcnow
    ) -> None:
        self.settings = settings
        self.now = now
        self.lifecycle = CalloutLifecycle(now=now)
        self.faults = FaultRules(settings, self.lifecycle)

    # -- SLA ------------------------------------------------------------------------------

    async def sweep_breaches(
        self, session: AsyncSession, *, batch: CalloutBatch | None = None
    ) -> list[Callout]:
        """Flag respond/repair breaches of open callouts; notify the contractor once each."""
        now = self.now()
        result = await session.execute(
            select(Callout).where(
                Callout.open_key.is_not(None),
                (Callout.respond_by < now) | (Callout.repair_by < now),
            )
        )
        breached = []
        for callout in result.scalars():
            if (
                not callout.respond_breached
                and callout.attending_at is None
                and now > callout.respond_by
            ):
                callout.respond_breached = True
                await self.lifecycle.event(
                    session,
                    callout,
                    "respond_breached",
                    SYSTEM,
                    f"nobody attended by {local_when(callout.respond_by, self.settings.zone)}",
                )
                queued = await queue_notifications(
                    session, self.settings, callout, "respond_breached"
                )
                if batch is not None:
                    batch.queued += len(queued)
                breached.append(callout)
            if (
                not callout.repair_breached
                and repaired_at(callout.fault_cleared_at, callout.verified_at) is None
                and now > callout.repair_by
            ):
                callout.repair_breached = True
                await self.lifecycle.event(
                    session,
                    callout,
                    "repair_breached",
                    SYSTEM,
                    "the unit did not show the fault clear by "
                    f"{local_when(callout.repair_by, self.settings.zone)}",
                )
                queued = await queue_notifications(
                    session, self.settings, callout, "repair_breached"
                )
                if batch is not None:
                    batch.queued += len(queued)
                breached.append(callout)
        return breached

    # -- reading --------------------------------------------------------------------------

    async def list(
        self,
        session: AsyncSession,
        *,
        open_only: bool = False,
        contractor: str | None = None,
        unit_id: str | None = None,
        limit: int = 500,
    ) -> list[CalloutView]:
        query = select(Callout).order_by(Callout.raised_at.desc(), Callout.id.desc()).limit(limit)
        if open_only:
            query = query.where(Callout.open_key.is_not(None))
        if contractor is not None:
            query = query.where(Callout.contractor == contractor)
        if unit_id is not None:
            query = query.where(Callout.unit_id == unit_id)
        return [CalloutView.model_validate(c) for c in (await session.execute(query)).scalars()]

    async def get(self, session: AsyncSession, callout_id: int) -> CalloutView:
        callout = await session.get(Callout, callout_id)
        if callout is None:
            raise UnknownCallout(callout_id)
        events = (
            await session.execute(
                select(CalloutEvent)
                .where(CalloutEvent.callout_id == callout_id)
                .order_by(CalloutEvent.at, CalloutEvent.id)
            )
        ).scalars()
        view = CalloutView.model_validate(callout)
        return view.model_copy(
            update={"events": [CalloutEventView.model_validate(e) for e in events]}
        )

    async def open_counts(self, session: AsyncSession) -> dict[str, int]:
        result = await session.execute(
            select(Callout.priority, func.count())
            .where(Callout.open_key.is_not(None))
            .group_by(Callout.priority)
        )
        return {str(p): int(n) for p, n in result.all()}
