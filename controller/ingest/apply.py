"""What each accepted message changes: live state, history rows, faults and callouts.

Called by `Ingest` inside its batch transaction, with the unit's `LiveStatus` (see
`controller.store.live_status`) and the batch's `BatchContext`. `newest` is False for a
late message (one that fills a seq gap): it is stored, and its fault events are applied
if newer than the last applied for that fault, but it never rolls the live state back.

What a heartbeat sets is the fleet's (`controller.fleet.state`). `HeartbeatCollapse`
applies only the newest heartbeat of a unit per batch, and always before any other
message of that unit, so the order of what the unit said is kept.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from controller.callouts import CalloutBatch, CalloutService
from controller.fleet.selftests import read_report
from controller.fleet.state import apply_heartbeat, set_online
from controller.store.fleet import PowerReading, SelfTestRecord, Unit
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

__all__ = [
    "PASSING",
    "BatchContext",
    "Handler",
    "HeartbeatCollapse",
    "apply_message",
]

#: Self-test verdicts that count as a passing function check.
PASSING = ("pass", "warn")


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


@dataclass(slots=True)
class BatchContext:
    """What applying the messages of one batch needs besides each message, made afresh
    for every transaction (`load`)."""

    callouts: CalloutService
    #: Fresh traffic from an offline unit brings it back online.
    offline_timeout_s: float
    #: The fault rows of the batch's units with events or self-tests, loaded once, and
    #: the notifications queued (the writer wakes the notifier after commit).
    changes: CalloutBatch = field(default_factory=CalloutBatch)
    #: (unit, report id) of the batch's self-test reports already stored; None: look
    #: each up.
    known_reports: set[tuple[str, str]] | None = None
    collapse: HeartbeatCollapse = field(default_factory=HeartbeatCollapse)

    @classmethod
    async def load(
        cls,
        session: AsyncSession,
        callouts: CalloutService,
        offline_timeout_s: float,
        messages: list[Message],
    ) -> BatchContext:
        """The context of a batch of `messages`: their units' fault rows and which of
        their self-test reports are stored already, each read with one query."""
        context = cls(callouts, offline_timeout_s)
        faults = {m.unit_id for m in messages if isinstance(m, Event | SelfTestReport)}
        await context.changes.preload(session, sorted(faults))
        context.known_reports = await _known_reports(session, messages)
        return context

    def is_fresh(self, sent_at: datetime, now: datetime) -> bool:
        return (now - sent_at).total_seconds() <= self.offline_timeout_s


#: Extra handling per message kind (e.g. "recording_index", "command_ack"), run in the
#: batch's transaction after the message is accepted (not for duplicates).
Handler = Callable[[AsyncSession, Message, BatchContext], Awaitable[None]]


async def _known_reports(session: AsyncSession, messages: list[Message]) -> set[tuple[str, str]]:
    ids = sorted({m.report_id for m in messages if isinstance(m, SelfTestReport)})
    known: set[tuple[str, str]] = set()
    for i in range(0, len(ids), 500):
        rows = await session.execute(
            select(SelfTestRecord.unit_id, SelfTestRecord.report_id).where(
                SelfTestRecord.report_id.in_(ids[i : i + 500])
            )
        )
        known.update((str(u), str(r)) for u, r in rows.all())
    return known


async def apply_message(
    session: AsyncSession,
    context: BatchContext,
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
                await _back_online(session, context, status, received_at)
            context.collapse.hold(status, message)
        return
    context.collapse.release(status.unit_id)
    if isinstance(message, UnitState):
        await _state(session, context, status, message, received_at)
        return
    # Fresh traffic from a unit marked offline (e.g. after silence) means it is back.
    if newest and status.online is not True and context.is_fresh(message.sent_at, received_at):
        await _back_online(session, context, status, received_at)
    if isinstance(message, PowerStatus):
        _power(session, status, message, newest)
    elif isinstance(message, SelfTestReport):
        await _selftest(session, context, unit, status, message, received_at)
    elif isinstance(message, Event):
        if unit is None:  # loaded by ingest for every unit with events; a fallback
            unit = await session.get(Unit, status.unit_id)
        assert unit is not None
        await _event(session, context, unit, status, message, newest)


async def _back_online(
    session: AsyncSession, context: BatchContext, status: LiveStatus, at: datetime
) -> None:
    await set_online(session, context.callouts, status, True, "", at, batch=context.changes)


async def _state(
    session: AsyncSession,
    context: BatchContext,
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
    await set_online(
        session, context.callouts, status, message.online, reason, at, batch=context.changes
    )


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
    context: BatchContext,
    unit: Unit | None,
    status: LiveStatus,
    message: SelfTestReport,
    at: datetime,
) -> None:
    known = context.known_reports
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
    # Kept as the control room reads it: not-assessed checks count only where required.
    if unit is None:
        unit = await session.get(Unit, status.unit_id)
    required = (
        context.callouts.settings.required_checks(unit.contractor, unit.site)
        if unit is not None
        else frozenset()
    )
    checks = [c.model_dump(mode="json") for c in message.checks]
    verdict = read_report(checks, required).verdict
    record = SelfTestRecord(
        unit_id=status.unit_id,
        report_id=message.report_id,
        trigger=message.trigger,
        command_id=message.command_id,
        started_at=message.started_at,
        finished_at=message.finished_at,
        verdict=verdict,
        checks=checks,
        received_at=at,
    )
    session.add(record)
    if status.last_selftest_at is None or message.finished_at >= status.last_selftest_at:
        status.last_selftest_at = message.finished_at
        status.last_selftest_verdict = verdict
        status.last_selftest_id = message.report_id
    if verdict in PASSING:
        if status.last_pass_at is None or message.finished_at > status.last_pass_at:
            status.last_pass_at = message.finished_at
        await context.callouts.faults.fault_cleared(
            session,
            status.unit_id,
            FaultCode.SELFTEST_OVERDUE,
            at=message.finished_at,
            note=f"function check {message.report_id} ran",
            batch=context.changes,
        )
    await context.callouts.faults.on_selftest(session, record, batch=context.changes)


async def _event(
    session: AsyncSession,
    context: BatchContext,
    unit: Unit,
    status: LiveStatus,
    message: Event,
    newest: bool,
) -> None:
    body = message.event
    faults = context.callouts.faults
    if isinstance(body, FaultRaised):
        await faults.fault_raised(
            session,
            unit,
            body.code,
            at=message.at,
            check=body.check[:64] if body.check else None,
            detail=body.detail,
            facts=dict(body.facts),
            origin="unit",
            event_seq=message.seq,
            batch=context.changes,
        )
    elif isinstance(body, FaultCleared):
        await faults.fault_cleared(
            session,
            unit.unit_id,
            body.code,
            at=message.at,
            detail=body.detail,
            event_seq=message.seq,
            batch=context.changes,
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
