"""What each accepted message changes: live state, history rows, faults and callouts.

Called by `Ingest` inside its batch transaction, with the unit's `LiveStatus` (see
`controller.store.live_status`). `newest` is False for a late message (one that fills a
seq gap): it is stored, and its fault events are applied if newer than the last applied
for that fault, but it never rolls the live state back.

Heartbeats are most of the traffic and change nothing but live-status columns, all named
in `HEARTBEAT_COLUMNS`. `HeartbeatCollapse` applies only the newest heartbeat of a unit
per batch, and always before any other message of that unit, so the order of what the
unit said is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from controller import audit
from controller.store.fleet import PowerReading, SelfTestRecord, Unit, UnitStatus
from controller.store.live_status import LiveStatus
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

__all__ = [
    "HEARTBEAT_COLUMNS",
    "KEEP",
    "KNOWN_REPORTS",
    "PASSING",
    "HeartbeatCollapse",
    "apply_message",
    "known_reports",
    "set_online",
]

#: session.info key: (unit, report id) of self-test reports already stored (see below).
KNOWN_REPORTS = "known_reports"

#: Self-test verdicts that count as a passing function check.
PASSING = ("pass", "warn")

#: A heartbeat value that leaves its column as it was.
KEEP: Any = object()

#: The live-status columns a heartbeat sets, each with how its value comes from the
#: message: the one mapping of a heartbeat onto `unit_status` (a new column is a line).
HEARTBEAT_COLUMNS: dict[str, Callable[[Heartbeat], Any]] = {
    "heartbeat_at": attrgetter("sent_at"),
    "recording": attrgetter("recording"),
    "recording_reason": attrgetter("recording_reason"),
    "gate_open": attrgetter("gate_open"),
    "gate_reason": attrgetter("gate_reason"),
    "deployment_id": attrgetter("deployment_id"),
    "outbox_depth": attrgetter("outbox_depth"),
    "outbox_dropped": attrgetter("outbox_dropped"),
    "uptime_s": attrgetter("uptime_s"),
    "temperature_c": attrgetter("temperature_c"),
    "clock_offset_s": attrgetter("clock_offset_s"),
    "reported_faults": lambda m: [f.value for f in m.open_faults],
    "position_lat": lambda m: m.position[0] if m.position else None,
    "position_lon": lambda m: m.position[1] if m.position else None,
    "storage_total_bytes": lambda m: m.storage.total_bytes if m.storage else KEEP,
    "storage_free_bytes": lambda m: m.storage.free_bytes if m.storage else KEEP,
}

Status = UnitStatus | LiveStatus


class Context:
    """What applying a message needs besides the message: the callout rules and the
    offline timeout (fresh traffic from an offline unit brings it back online)."""

    def __init__(self, callouts: CalloutService, offline_timeout_s: float) -> None:
        self.callouts = callouts
        self.offline_timeout_s = offline_timeout_s

    def is_fresh(self, sent_at: datetime, now: datetime) -> bool:
        return (now - sent_at).total_seconds() <= self.offline_timeout_s


class HeartbeatCollapse:
    """Holds each unit's newest heartbeat of a batch until another message of the unit is
    applied or the batch ends: one heartbeat per unit and batch reaches the live state."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[LiveStatus, Heartbeat]] = {}

    def hold(self, status: LiveStatus, message: Heartbeat) -> None:
        self._held[status.unit_id] = (status, message)

    def release(self, unit_id: str) -> None:
        held = self._held.pop(unit_id, None)
        if held is not None:
            apply_heartbeat(*held)

    def release_all(self) -> None:
        for status, message in self._held.values():
            apply_heartbeat(status, message)
        self._held.clear()


def apply_heartbeat(status: Status, message: Heartbeat) -> None:
    values = {}
    for column, value_of in HEARTBEAT_COLUMNS.items():
        value = value_of(message)
        if value is not KEEP:
            values[column] = value
    if isinstance(status, LiveStatus):
        status.assign(values)
    else:
        for column, value in values.items():
            setattr(status, column, value)


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
    status: Status,
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
    context: Context,
    collapse: HeartbeatCollapse,
    unit: Unit | None,
    status: LiveStatus,
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
    if isinstance(message, Heartbeat):
        if newest:
            if status.online is not True and context.is_fresh(message.sent_at, received_at):
                await set_online(session, context.callouts, status, True, "", received_at)
            collapse.hold(status, message)
        return
    collapse.release(status.unit_id)
    callouts = context.callouts
    if isinstance(message, UnitState):
        await _state(session, callouts, status, message, received_at)
        return
    # Fresh traffic from a unit marked offline (e.g. after silence) means it is back.
    if newest and status.online is not True and context.is_fresh(message.sent_at, received_at):
        await set_online(session, callouts, status, True, "", received_at)
    if isinstance(message, PowerStatus):
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
    status: LiveStatus,
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


def _power(session: AsyncSession, status: LiveStatus, message: PowerStatus, newest: bool) -> None:
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
    status: LiveStatus,
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
    status: LiveStatus,
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
            check=body.check[:64] if body.check else None,
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
