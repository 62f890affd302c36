"""Faults -> maintenance callouts with SLA deadlines, and the callout lifecycle.

    raised -> acknowledged -> attending -> resolved -> verified -> closed
                                  ^            |
                                  +------------+  (the fix did not hold: attend again)

- One open callout per unit and fault (`open_key`); a repeat raise adds an event to it,
  and re-opens it (back to attending) when it had been resolved or verified.
- Priority from `protocol.faults`; deadlines from the unit's contract (`ContractSettings`):
  P1/P2 respond and repair in contract hours, P3 at the next routine visit.
  *Respond* is met when someone is attending; *repair* when the callout is resolved.
- `verified` needs a passing self-test of the fault's check finished after the resolve;
  it happens automatically when such a report arrives and is refused by hand otherwise.
- A fault the unit clears, or a unit coming back online, is noted on the callout.
- UPS facts (the last PowerStatus) are attached to power callouts.
Every change is written to the audit log in the same transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from controller import audit
from controller.callout_views import CalloutEventView, CalloutView, check_passes
from controller.config import ControllerSettings
from controller.errors import TransitionRefused, UnknownCallout
from controller.notify import queue_notifications
from controller.store.base import utcnow
from controller.store.fleet import (
    Callout,
    CalloutEvent,
    PowerReading,
    SelfTestRecord,
    Unit,
    UnitFault,
)
from protocol.faults import FaultCode

__all__ = [
    "OPEN_STATES",
    "STATES",
    "CalloutEventView",
    "CalloutService",
    "CalloutView",
    "check_passes",
]

log = logging.getLogger(__name__)

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
POWER_FAULTS = frozenset(
    {
        FaultCode.MAINS_FAILURE,
        FaultCode.BATTERY_LOW,
        FaultCode.REPLACE_BATTERY,
        FaultCode.UPS_SELFTEST_FAILED,
        FaultCode.UPS_COMMS_LOST,
    }
)
SYSTEM = "system"


_FAULTS_KEY = "preloaded_faults"


async def preload_faults(session: AsyncSession, unit_ids: list[str]) -> None:
    """Load every fault row of these units once, so per-message lookups need no query
    (ingest calls this per batch)."""
    known: dict[str, dict[str, UnitFault]] = session.info.setdefault(_FAULTS_KEY, {})
    for unit_id in unit_ids:
        known.setdefault(unit_id, {})
    for i in range(0, len(unit_ids), 500):
        rows = await session.execute(
            select(UnitFault).where(UnitFault.unit_id.in_(unit_ids[i : i + 500]))
        )
        for fault in rows.scalars():
            known[fault.unit_id][fault.code] = fault


async def _get_fault(session: AsyncSession, unit_id: str, code: FaultCode) -> UnitFault | None:
    known: dict[str, UnitFault] | None = session.info.get(_FAULTS_KEY, {}).get(unit_id)
    if known is not None:
        return known.get(code.value)
    return await session.get(UnitFault, (unit_id, code.value))


def _remember_fault(session: AsyncSession, fault: UnitFault) -> None:
    known = session.info.get(_FAULTS_KEY, {}).get(fault.unit_id)
    if known is not None:
        known[fault.code] = fault


class CalloutService:
    def __init__(
        self, settings: ControllerSettings, *, now: Callable[[], datetime] = utcnow
    ) -> None:
        self.settings = settings
        self.now = now

    # -- faults ---------------------------------------------------------------------------

    async def _open_callout(self, session: AsyncSession, unit_id: str, code: str) -> Callout | None:
        result = await session.execute(
            select(Callout).where(Callout.open_key == f"{unit_id}|{code}")
        )
        return result.scalar_one_or_none()

    async def _event(
        self,
        session: AsyncSession,
        callout: Callout,
        kind: str,
        actor: str,
        note: str = "",
        details: dict[str, Any] | None = None,
        at: datetime | None = None,
    ) -> None:
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

    async def _power_facts(self, session: AsyncSession, unit_id: str) -> dict[str, Any]:
        row = (
            await session.execute(
                select(PowerReading)
                .where(PowerReading.unit_id == unit_id)
                .order_by(PowerReading.at.desc(), PowerReading.id.desc())
                .limit(1)
            )
        ).scalar_one_or_none()
        if row is None:
            return {}
        return {
            "at": row.at.isoformat(),
            "source": row.source,
            "on_battery": row.on_battery,
            **row.facts,
        }

    async def fault_raised(
        self,
        session: AsyncSession,
        unit: Unit,
        code: FaultCode,
        *,
        at: datetime | None = None,
        check: str | None = None,
        detail: str = "",
        facts: dict[str, Any] | None = None,
        origin: str = "unit",
        event_seq: int | None = None,
    ) -> Callout | None:
        """Record the fault and open (or add to) its callout. Returns None when the event
        is older than one already applied for this fault (a late redelivery)."""
        when = at or self.now()
        fault = await _get_fault(session, unit.unit_id, code)
        if fault is not None and event_seq is not None and (fault.event_seq or -1) >= event_seq:
            return None
        if fault is None:
            fault = UnitFault(unit_id=unit.unit_id, code=code.value)
            session.add(fault)
            _remember_fault(session, fault)
        fault.priority = code.priority.value
        fault.active, fault.origin, fault.check_name = True, origin, check
        fault.detail, fault.facts = detail[:2000], dict(facts or {})
        fault.raised_at, fault.cleared_at, fault.event_seq = when, None, event_seq
        full_facts: dict[str, Any] = {"fault": dict(facts or {})}
        if code in POWER_FAULTS:
            full_facts["ups"] = await self._power_facts(session, unit.unit_id)
        callout = await self._open_callout(session, unit.unit_id, code.value)
        if callout is not None:
            callout.raise_count += 1
            callout.facts = full_facts
            note = detail or "raised again"
            await self._event(session, callout, "repeat", SYSTEM, note, at=when)
            if callout.status in ("resolved", "verified"):
                callout.status, callout.verified_at = "attending", None
                await self._event(
                    session,
                    callout,
                    "reopened",
                    SYSTEM,
                    "the fault came back after the repair",
                    at=when,
                )
            return callout
        respond_by, repair_by = self.settings.contract(unit.contractor).deadlines(
            code.priority, when
        )
        callout = Callout(
            unit_id=unit.unit_id,
            fault_code=code.value,
            priority=code.priority.value,
            status="raised",
            open_key=f"{unit.unit_id}|{code.value}",
            contractor=unit.contractor,
            title=code.info.title,
            check_name=check,
            detail=detail[:2000],
            facts=full_facts,
            raised_at=when,
            respond_by=respond_by,
            repair_by=repair_by,
            updated_at=when,
            raise_count=1,
            respond_breached=False,
            repair_breached=False,
        )
        session.add(callout)
        await session.flush()
        await self._event(
            session,
            callout,
            "raised",
            SYSTEM,
            detail or code.info.title,
            {"priority": callout.priority, "origin": origin},
            at=when,
        )
        await queue_notifications(session, self.settings, callout, "new")
        log.warning(
            "callout raised id=%s unit=%s fault=%s priority=%s",
            callout.id,
            unit.unit_id,
            code.value,
            callout.priority,
        )
        return callout

    async def fault_cleared(
        self,
        session: AsyncSession,
        unit_id: str,
        code: FaultCode,
        *,
        at: datetime | None = None,
        detail: str = "",
        event_seq: int | None = None,
        note: str | None = None,
        kind: str = "fault_cleared",
    ) -> Callout | None:
        """Mark the fault cleared and note it on its open callout (which stays open: the
        contractor still resolves it and a self-test verifies it)."""
        when = at or self.now()
        fault = await _get_fault(session, unit_id, code)
        # Every callout was opened with its fault: no active fault, nothing to note.
        if fault is None or not fault.active:
            return None
        if event_seq is not None and (fault.event_seq or -1) >= event_seq:
            return None
        fault.active, fault.cleared_at, fault.event_seq = False, when, event_seq
        callout = await self._open_callout(session, unit_id, code.value)
        if callout is not None:
            callout.fault_cleared_at = when
            await self._event(
                session,
                callout,
                kind,
                SYSTEM,
                note or detail or "the unit reports the fault cleared",
                at=when,
            )
        return callout

    async def unit_online(self, session: AsyncSession, unit_id: str, at: datetime) -> None:
        await self.fault_cleared(
            session,
            unit_id,
            FaultCode.UNIT_OFFLINE,
            at=at,
            note="the unit is back online",
            kind="unit_online",
        )

    async def on_selftest(self, session: AsyncSession, report: SelfTestRecord) -> list[Callout]:
        """Verify the unit's resolved callouts that this report shows fixed."""
        preloaded = session.info.get(_FAULTS_KEY, {}).get(report.unit_id)
        if preloaded is not None and not preloaded:
            return []  # no fault was ever recorded for the unit: no callout either
        result = await session.execute(
            select(Callout).where(Callout.unit_id == report.unit_id, Callout.status == "resolved")
        )
        verified = []
        for callout in result.scalars():
            if callout.resolved_at is None or report.finished_at <= callout.resolved_at:
                continue
            if check_passes(callout, report):
                await self._move(
                    session,
                    callout,
                    "verified",
                    SYSTEM,
                    f"self-test {report.report_id} passed after the repair",
                    {"report_id": report.report_id},
                )
                verified.append(callout)
        return verified

    # -- lifecycle ------------------------------------------------------------------------

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
        return next((r for r in result.scalars() if check_passes(callout, r)), None)

    async def _move(
        self,
        session: AsyncSession,
        callout: Callout,
        to: str,
        actor: str,
        note: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        when = self.now()
        callout.status = to
        setattr(callout, _STAMP[to], when)
        if to == "attending":
            callout.resolved_at = None
        if to == "closed":
            callout.open_key = None
        await self._event(session, callout, to, actor, note, details, at=when)

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
                check = callout.check_name or callout.fault_code
                raise TransitionRefused(
                    callout_id,
                    callout.status,
                    to,
                    f"no self-test has passed the {check!r} check since the repair; "
                    "run one (self-test now) and verify when it passes",
                )
            details["report_id"] = report.report_id
        await self._move(session, callout, to, actor, note, details)
        return callout

    # -- SLA ------------------------------------------------------------------------------

    async def sweep_breaches(self, session: AsyncSession) -> list[Callout]:
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
                await self._event(
                    session,
                    callout,
                    "respond_breached",
                    SYSTEM,
                    f"nobody attended by {callout.respond_by:%Y-%m-%d %H:%M} UTC",
                )
                await queue_notifications(session, self.settings, callout, "respond_breached")
                breached.append(callout)
            if (
                not callout.repair_breached
                and callout.resolved_at is None
                and now > callout.repair_by
            ):
                callout.repair_breached = True
                await self._event(
                    session,
                    callout,
                    "repair_breached",
                    SYSTEM,
                    f"not repaired by {callout.repair_by:%Y-%m-%d %H:%M} UTC",
                )
                await queue_notifications(session, self.settings, callout, "repair_breached")
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
