"""What each accepted message changes: live state, history rows, faults and callouts.

Called by `Ingest` inside its batch transaction. `newest` is False for a late message
(one that fills a seq gap): it is stored, and its fault events are applied if newer than
the last applied for that fault, but it never rolls the live state back.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from controller import audit
from controller.store.fleet import PowerReading, SelfTestRecord, Unit, UnitStatus
from protocol.faults import FaultCode
from protocol.messages import (
    Event,
    FaultCleared,
    FaultRaised,
    GateChanged,
    Heartbeat,
    Message,
    PowerStatus,
    RecordingStarted,
    RecordingStopped,
    SelfTestReport,
    UnitState,
)

if TYPE_CHECKING:
    from controller.callouts import CalloutService
    from controller.ingest import Ingest

__all__ = ["KNOWN_REPORTS", "PASSING", "apply_message", "known_reports", "set_online"]

#: session.info key: (unit, report id) of self-test reports already stored (see below).
KNOWN_REPORTS = "known_reports"

#: Self-test verdicts that count as a passing function check.
PASSING = ("pass", "warn")


async def known_reports(session: AsyncSession, messages: list[Message]) -> None:
    """Look up once per batch which of its self-test reports are stored already."""
    ids = sorted({m.report_id for m in messages if isinstance(m, SelfTestReport)})
    known: set[tuple[str, str]] = set()
    for i in range(0, len(ids), 500):
        rows = await session.execute(
            select(SelfTestRecord.unit_id, SelfTestRecord.report_id).where(
                SelfTestRecord.report_id.in_(ids[i : i + 500])
            )
        )
        known.update((str(u), str(r)) for u, r in rows.all())
    session.info[KNOWN_REPORTS] = known


async def set_online(
    session: AsyncSession,
    callouts: CalloutService,
    status: UnitStatus,
    online: bool,
    reason: str,
    at: datetime,
) -> bool:
    """Change a unit's online state; audit it; note a return on its offline callout."""
    status.online_reason = reason[:200]
    if status.online is online:
        return False
    status.online, status.online_changed_at = online, at
    await audit.record(
        session,
        actor="system",
        action="unit.online" if online else "unit.offline",
        subject=f"unit:{status.unit_id}",
        details={"reason": reason[:200]},
        at=at,
    )
    if online:
        await callouts.unit_online(session, status.unit_id, at)
    return True


async def apply_message(
    session: AsyncSession,
    ingest: Ingest,
    unit: Unit | None,
    status: UnitStatus,
    message: Message,
    received_at: datetime,
    *,
    newest: bool,
) -> None:
    # A will is published by the broker, not the unit: it proves nothing about liveness.
    alive = not (isinstance(message, UnitState) and not message.online)
    if alive and (status.last_seen_at is None or received_at > status.last_seen_at):
        status.last_seen_at = received_at
    if newest and status.boot_id != message.boot_id:
        status.boot_id = message.boot_id
    callouts = ingest.callouts
    if isinstance(message, UnitState):
        await _state(session, callouts, status, message, received_at)
        return
    # Fresh traffic from a unit marked offline (e.g. after silence) means it is back.
    if newest and status.online is not True and ingest.is_fresh(message.sent_at, received_at):
        await set_online(session, callouts, status, True, "", received_at)
    if isinstance(message, Heartbeat):
        if newest:
            _heartbeat(status, message)
    elif isinstance(message, PowerStatus):
        _power(session, status, message, newest)
    elif isinstance(message, SelfTestReport):
        await _selftest(session, callouts, status, message, received_at)
    elif isinstance(message, Event):
        if unit is None:  # loaded by ingest for every unit with events; a fallback
            unit = await session.get(Unit, status.unit_id)
        assert unit is not None
        await _event(session, callouts, unit, status, message, newest)


async def _state(
    session: AsyncSession,
    callouts: CalloutService,
    status: UnitStatus,
    message: UnitState,
    at: datetime,
) -> None:
    seq, current = message.seq, status.state_seq
    # A will carries the seq reserved just before the online state of its connection.
    is_own_will = not message.online and current is not None and seq == current - 1
    if current is not None and seq <= current and not is_own_will:
        return
    status.state_seq = max(seq, current or seq)
    if message.agent_version:
        status.agent_version = message.agent_version[:100]
    reason = message.reason or ("" if message.online else "offline")
    await set_online(session, callouts, status, message.online, reason, at)


def _heartbeat(status: UnitStatus, message: Heartbeat) -> None:
    values: dict[str, object] = {
        "heartbeat_at": message.sent_at,
        "recording": message.recording,
        "recording_reason": message.recording_reason,
        "gate_open": message.gate_open,
        "gate_reason": message.gate_reason,
        "deployment_id": message.deployment_id,
        "outbox_depth": message.outbox_depth,
        "temperature_c": message.temperature_c,
        "clock_offset_s": message.clock_offset_s,
        "reported_faults": [f.value for f in message.open_faults],
    }
    if message.storage is not None:
        values["storage_total_bytes"] = message.storage.total_bytes
        values["storage_free_bytes"] = message.storage.free_bytes
    # Setting an ORM attribute costs far more than reading it: set only what changed.
    for key, value in values.items():
        if getattr(status, key) != value:
            setattr(status, key, value)


def _power(session: AsyncSession, status: UnitStatus, message: PowerStatus, newest: bool) -> None:
    facts = message.model_dump(
        mode="json",
        include={
            "low_battery",
            "replace_battery",
            "charge_pct",
            "runtime_s",
            "input_voltage",
            "load_pct",
            "ups_status",
            "test_result",
            "comms_ok",
            "model",
        },
    )
    session.add(
        PowerReading(
            unit_id=status.unit_id,
            at=message.sent_at,
            source=message.source,
            on_battery=message.on_battery,
            facts=facts,
        )
    )
    if newest:
        status.power_source, status.on_battery = message.source, message.on_battery
        status.low_battery, status.charge_pct = message.low_battery, message.charge_pct
        status.power_at = message.sent_at


async def _selftest(
    session: AsyncSession,
    callouts: CalloutService,
    status: UnitStatus,
    message: SelfTestReport,
    at: datetime,
) -> None:
    known: set[tuple[str, str]] | None = session.info.get(KNOWN_REPORTS)
    key = (status.unit_id, message.report_id)
    if known is None:
        found = await session.scalar(
            select(SelfTestRecord.id).where(
                SelfTestRecord.unit_id == key[0], SelfTestRecord.report_id == key[1]
            )
        )
        if found is not None:
            return
    elif key in known:
        return
    else:
        known.add(key)
    record = SelfTestRecord(
        unit_id=status.unit_id,
        report_id=message.report_id,
        trigger=message.trigger,
        command_id=message.command_id,
        started_at=message.started_at,
        finished_at=message.finished_at,
        verdict=message.verdict,
        checks=[c.model_dump(mode="json") for c in message.checks],
        received_at=at,
    )
    session.add(record)
    if status.last_selftest_at is None or message.finished_at >= status.last_selftest_at:
        status.last_selftest_at = message.finished_at
        status.last_selftest_verdict = message.verdict
        status.last_selftest_id = message.report_id
    if message.verdict in PASSING:
        if status.last_pass_at is None or message.finished_at > status.last_pass_at:
            status.last_pass_at = message.finished_at
        await callouts.fault_cleared(
            session,
            status.unit_id,
            FaultCode.SELFTEST_OVERDUE,
            at=message.finished_at,
            note=f"function check {message.report_id} ran",
        )
    await callouts.on_selftest(session, record)


async def _event(
    session: AsyncSession,
    callouts: CalloutService,
    unit: Unit,
    status: UnitStatus,
    message: Event,
    newest: bool,
) -> None:
    body = message.event
    if isinstance(body, FaultRaised):
        await callouts.fault_raised(
            session,
            unit,
            body.code,
            at=message.at,
            check=body.check,
            detail=body.detail,
            facts=dict(body.facts),
            origin="unit",
            event_seq=message.seq,
        )
    elif isinstance(body, FaultCleared):
        await callouts.fault_cleared(
            session,
            unit.unit_id,
            body.code,
            at=message.at,
            detail=body.detail,
            event_seq=message.seq,
        )
    elif not newest:
        return
    elif isinstance(body, GateChanged):
        status.gate_open, status.gate_reason = body.open, body.reason[:500]
        status.deployment_id = body.deployment_id
    elif isinstance(body, RecordingStarted):
        status.recording, status.recording_reason = True, ""
    elif isinstance(body, RecordingStopped):
        status.recording, status.recording_reason = False, body.reason[:500]
