"""The callout lifecycle: its states, the steps allowed between them, and the event log
every change writes (with its audit record, in the same transaction).

    raised -> acknowledged -> attending -> resolved -> verified -> closed
                                  ^            |
                                  +------------+  (the fix did not hold: attend again)

`resolved` is the contractor's word that the fault is fixed: the callout stays open,
awaiting verification, until the unit shows the fault clear (`verified`, by the fault
rules). A step by hand that the table does not allow is refused with a sentence saying
why; `verified` by hand also needs a self-test after the resolve that shows the fault
clear. `attending_at` keeps the first time someone attended (the respond deadline is met
or missed then, whatever happens later). `CalloutService` holds one `CalloutLifecycle`,
shared with its fault rules.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from controller import audit
from controller.callouts.views import repair_finding
from controller.errors import TransitionRefused, UnknownCallout
from controller.labels import check_label, fault_label
from controller.store.base import utcnow
from controller.store.fleet import Callout, CalloutEvent, SelfTestRecord, UnitFault

__all__ = ["OPEN_STATES", "STATES", "SYSTEM", "CalloutLifecycle"]

STATES = ("raised", "acknowledged", "attending", "resolved", "verified", "closed")
OPEN_STATES = STATES[:-1]
_NEXT: dict[str, tuple[str, ...]] = {
    "raised": ("acknowledged",),
    "acknowledged": ("attending",),
    "attending": ("resolved",),
    "resolved": ("verified", "attending"),
    "verified": ("closed",),
    "closed": (),
}
_WHY = {
    "acknowledged": "only a newly raised callout can be acknowledged",
    "attending": "a callout must be acknowledged before anyone attends",
    "resolved": "only a callout being attended can be resolved",
    "verified": "only a resolved callout can be verified",
    "closed": "only a verified callout can be closed",
}
_STAMP = {
    "acknowledged": "acknowledged_at",
    "attending": "attending_at",
    "resolved": "resolved_at",
    "verified": "verified_at",
    "closed": "closed_at",
}
#: The actor of the changes the controller makes itself.
SYSTEM = "system"


class CalloutLifecycle:
    """The clock, the event log and the steps: by hand (`transition`) or by the
    controller (`move`)."""

    def __init__(self, *, now: Callable[[], datetime] = utcnow) -> None:
        self.now = now

    async def event(
        self,
        session: AsyncSession,
        callout: Callout,
        kind: str,
        actor: str,
        note: str = "",
        details: dict[str, Any] | None = None,
        at: datetime | None = None,
    ) -> None:
        """Write an event on the callout's log, and its audit record."""
        when = at or self.now()
        session.add(
            CalloutEvent(
                callout_id=callout.id,
                at=when,
                kind=kind,
                actor=actor,
                note=note[:2000],
                details=details or {},
            )
        )
        callout.updated_at = when
        await audit.record(
            session,
            actor=actor,
            action=f"callout.{kind}",
            subject=f"callout:{callout.id}",
            details={
                "unit": callout.unit_id,
                "fault": callout.fault_code,
                "note": note[:500],
                **(details or {}),
            },
            at=when,
        )

    async def _passing_report(
        self, session: AsyncSession, callout: Callout
    ) -> SelfTestRecord | None:
        assert callout.resolved_at is not None
        result = await session.execute(
            select(SelfTestRecord)
            .where(
                SelfTestRecord.unit_id == callout.unit_id,
                SelfTestRecord.finished_at > callout.resolved_at,
            )
            .order_by(SelfTestRecord.finished_at)
        )
        fault = await session.get(UnitFault, (callout.unit_id, callout.fault_code))
        active = None if fault is None else fault.active
        return next(
            (
                r
                for r in result.scalars()
                if repair_finding(callout, r, fault_active=active).outcome == "pass"
            ),
            None,
        )

    async def move(
        self,
        session: AsyncSession,
        callout: Callout,
        to: str,
        actor: str,
        note: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Make a step (allowed or not: `transition` checks steps by hand)."""
        when = self.now()
        callout.status = to
        if to != "attending" or callout.attending_at is None:
            setattr(callout, _STAMP[to], when)
        if to == "attending":
            callout.resolved_at = None
        if to == "closed":
            callout.open_key = None
        await self.event(session, callout, to, actor, note, details, at=when)

    async def transition(
        self, session: AsyncSession, callout_id: int, to: str, *, actor: str, note: str = ""
    ) -> Callout:
        """Move a callout one step; refuse an invalid step with TransitionRefused."""
        callout = await session.get(Callout, callout_id, with_for_update=True)
        if callout is None:
            raise UnknownCallout(callout_id)
        if to not in STATES[1:]:
            raise TransitionRefused(callout_id, callout.status, to, f"{to!r} is not a step")
        if to not in _NEXT[callout.status]:
            why = "a closed callout cannot change" if callout.status == "closed" else _WHY[to]
            raise TransitionRefused(callout_id, callout.status, to, why)
        details: dict[str, Any] = {}
        if to == "verified":
            report = await self._passing_report(session, callout)
            if report is None:
                check = (
                    check_label(callout.check_name).title
                    if callout.check_name
                    else fault_label(callout.fault_code).title
                )
                raise TransitionRefused(
                    callout_id,
                    callout.status,
                    to,
                    f"no self-test has passed the check '{check}' since the repair; "
                    "run a self-test and verify when it passes",
                )
            details["report_id"] = report.report_id
        await self.move(session, callout, to, actor, note, details)
        return callout
