"""Callouts from the units' messages: a fault raises one (or adds to it), a clear or a
unit coming back online is noted on it, and the unit's own word verifies a repair.

- One open callout per unit and fault (`open_key`); a repeat raise adds an event to it,
  and re-opens it (back to attending) when it had been resolved or verified.
- Priority from `protocol.faults`; deadlines from the unit's contract (`ContractSettings`).
- A resolved callout awaits verification: it is verified when a self-test report
  finished after the resolve shows the fault clear, or when the unit reports the fault
  cleared after the resolve; a report after the resolve that shows it still failing
  sends the callout back to attending (the repair did not hold), and the contractor is
  told.
- UPS facts (the last PowerStatus) are attached to power callouts.

Each call may carry the `CalloutBatch` of its transaction: the fault rows of the units
loaded up front (`CalloutBatch.preload`, so a batch of messages needs no query per
message), and a count of the notifications queued (the notifier is woken after commit).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from controller.callouts.lifecycle import SYSTEM, CalloutLifecycle
from controller.callouts.notify import queue_notifications
from controller.callouts.views import repair_finding
from controller.store.fleet import Callout, PowerReading, SelfTestRecord, Unit, UnitFault
from protocol.faults import FaultCode

if TYPE_CHECKING:
    from controller.config import ControllerSettings

__all__ = ["POWER_FAULTS", "CalloutBatch", "FaultRules"]

log = logging.getLogger(__name__)

POWER_FAULTS = frozenset(
    {
        FaultCode.MAINS_FAILURE,
        FaultCode.BATTERY_LOW,
        FaultCode.REPLACE_BATTERY,
        FaultCode.UPS_SELFTEST_FAILED,
        FaultCode.UPS_COMMS_LOST,
    }
)


@dataclass(slots=True)
class CalloutBatch:
    """What the callout changes of one transaction share."""

    #: Every fault row of the preloaded units, by unit and code. A unit not in it has its
    #: faults looked up one by one.
    faults: dict[str, dict[str, UnitFault]] = field(default_factory=dict)
    #: Notifications queued in the transaction (wake the notifier once it commits).
    queued: int = 0

    async def preload(self, session: AsyncSession, unit_ids: list[str]) -> None:
        """Load every fault row of these units once, so per-message lookups need no
        query (ingest does this per batch)."""
        for unit_id in unit_ids:
            self.faults.setdefault(unit_id, {})
        for i in range(0, len(unit_ids), 500):
            rows = await session.execute(
                select(UnitFault).where(UnitFault.unit_id.in_(unit_ids[i : i + 500]))
            )
            for fault in rows.scalars():
                self.faults[fault.unit_id][fault.code] = fault


async def _get_fault(
    session: AsyncSession, batch: CalloutBatch | None, unit_id: str, code: FaultCode
) -> UnitFault | None:
    known = None if batch is None else batch.faults.get(unit_id)
    if known is not None:
        return known.get(code.value)
    return await session.get(UnitFault, (unit_id, code.value))


def _remember_fault(batch: CalloutBatch | None, fault: UnitFault) -> None:
    known = None if batch is None else batch.faults.get(fault.unit_id)
    if known is not None:
        known[fault.code] = fault


class FaultRules:
    """What the units' faults and self-tests do to callouts (ingest and the periodic jobs
    call these), writing through the callouts' `lifecycle`."""

    def __init__(self, settings: ControllerSettings, lifecycle: CalloutLifecycle) -> None:
        self.settings = settings
        self.lifecycle = lifecycle

    async def _open_callout(self, session: AsyncSession, unit_id: str, code: str) -> Callout | None:
        result = await session.execute(
            select(Callout).where(Callout.open_key == f"{unit_id}|{code}")
        )
        return result.scalar_one_or_none()

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
        batch: CalloutBatch | None = None,
    ) -> Callout | None:
        """Record the fault and open (or add to) its callout. Returns None when the event
        is older than one already applied for this fault (a late redelivery)."""
        when = at or self.lifecycle.now()
        fault = await _get_fault(session, batch, unit.unit_id, code)
        if fault is not None and event_seq is not None and (fault.event_seq or -1) >= event_seq:
            return None
        if fault is None:
            fault = UnitFault(unit_id=unit.unit_id, code=code.value)
            session.add(fault)
            _remember_fault(batch, fault)
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
            callout.fault_cleared_at = None  # the fault is back: not clear any more
            note = detail or "raised again"
            await self.lifecycle.event(session, callout, "repeat", SYSTEM, note, at=when)
            if callout.status in ("resolved", "verified"):
                callout.status, callout.verified_at = "attending", None
                await self.lifecycle.event(
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
        await self.lifecycle.event(
            session,
            callout,
            "raised",
            SYSTEM,
            detail or code.info.title,
            {"priority": callout.priority, "origin": origin},
            at=when,
        )
        queued = await queue_notifications(session, self.settings, callout, "new")
        if batch is not None:
            batch.queued += len(queued)
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
        batch: CalloutBatch | None = None,
    ) -> Callout | None:
        """Mark the fault cleared and note it on its open callout (which stays open: the
        contractor still resolves it and a self-test verifies it)."""
        when = at or self.lifecycle.now()
        fault = await _get_fault(session, batch, unit_id, code)
        # Every callout was opened with its fault: no active fault, nothing to note.
        if fault is None or not fault.active:
            return None
        if event_seq is not None and (fault.event_seq or -1) >= event_seq:
            return None
        fault.active, fault.cleared_at, fault.event_seq = False, when, event_seq
        callout = await self._open_callout(session, unit_id, code.value)
        if callout is not None:
            callout.fault_cleared_at = when
            await self.lifecycle.event(
                session,
                callout,
                kind,
                SYSTEM,
                note or detail or "the unit reports the fault cleared",
                at=when,
            )
            resolved = callout.resolved_at
            if callout.status == "resolved" and resolved is not None and when >= resolved:
                await self.lifecycle.move(
                    session,
                    callout,
                    "verified",
                    SYSTEM,
                    "The unit reports the fault cleared after the repair.",
                    {"by": kind},
                )
        return callout

    async def unit_online(
        self,
        session: AsyncSession,
        unit_id: str,
        at: datetime,
        *,
        batch: CalloutBatch | None = None,
    ) -> None:
        await self.fault_cleared(
            session,
            unit_id,
            FaultCode.UNIT_OFFLINE,
            at=at,
            note="the unit is back online",
            kind="unit_online",
            batch=batch,
        )

    async def on_selftest(
        self, session: AsyncSession, report: SelfTestRecord, *, batch: CalloutBatch | None = None
    ) -> list[Callout]:
        """Verify the unit's resolved callouts that this report shows fixed; send back to
        attending those it shows still failing (and tell the contractor). Returns the
        callouts verified."""
        preloaded = None if batch is None else batch.faults.get(report.unit_id)
        if preloaded is not None and not preloaded:
            return []  # no fault was ever recorded for the unit: no callout either
        result = await session.execute(
            select(Callout).where(Callout.unit_id == report.unit_id, Callout.status == "resolved")
        )
        verified = []
        for callout in result.scalars():
            if callout.resolved_at is None or report.finished_at <= callout.resolved_at:
                continue
            fault = await self._fault_row(session, batch, callout)
            finding = repair_finding(
                callout, report, fault_active=None if fault is None else fault.active
            )
            details = {"report_id": report.report_id, "finding": finding.outcome}
            if finding.outcome == "pass":
                await self.lifecycle.move(
                    session,
                    callout,
                    "verified",
                    SYSTEM,
                    "The unit's self-test after the repair shows the fault clear. "
                    f"{finding.sentence}.",
                    details,
                )
                verified.append(callout)
            elif finding.outcome == "fail":
                callout.status, callout.resolved_at = "attending", None
                await self.lifecycle.event(
                    session,
                    callout,
                    "repair_failed",
                    SYSTEM,
                    "The unit's self-test after the repair shows the fault still there. "
                    f"{finding.sentence}. The callout is back to attending.",
                    details,
                )
                queued = await queue_notifications(session, self.settings, callout, "repair_failed")
                if batch is not None:
                    batch.queued += len(queued)
            else:
                await self.lifecycle.event(
                    session,
                    callout,
                    "not_verified",
                    SYSTEM,
                    "The unit's self-test after the repair cannot show the fault clear. "
                    f"{finding.sentence}. Still awaiting verification.",
                    details,
                )
        return verified

    async def _fault_row(
        self, session: AsyncSession, batch: CalloutBatch | None, callout: Callout
    ) -> UnitFault | None:
        try:
            code = FaultCode(callout.fault_code)
        except ValueError:
            return None
        return await _get_fault(session, batch, callout.unit_id, code)
